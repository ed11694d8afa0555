package collector

import (
	"io"
	"net"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/cilium/ebpf/btf"
	"github.com/probe-dev/probe/collector/dump"
	"golang.org/x/sys/unix"
)

// tcpInfoRead are the unix.TCPInfo fields TCPSampleOf reads; the kernel must
// have each of them where x/sys puts it.
var tcpInfoRead = []string{
	"Retransmits", "Snd_mss", "Unacked", "Lost", "Rtt", "Rttvar", "Snd_ssthresh",
	"Snd_cwnd", "Total_retrans", "Pacing_rate", "Bytes_acked", "Bytes_received",
	"Min_rtt", "Delivery_rate", "Busy_time", "Rwnd_limited", "Sndbuf_limited",
}

// x/sys's TCPInfo must lay out every field as the running kernel's struct
// tcp_info does, or TCPSampleOf reads the wrong bytes.
func TestTCPInfoLayout(t *testing.T) {
	if _, err := os.Stat("/sys/kernel/btf/vmlinux"); err != nil {
		t.Skipf("kernel BTF not available, cannot check struct tcp_info: %v", err)
	}
	spec, err := btf.LoadKernelSpec()
	if err != nil {
		t.Fatalf("load kernel btf: %v", err)
	}
	var ks *btf.Struct
	if err := spec.TypeByName("tcp_info", &ks); err != nil {
		t.Fatalf("find struct tcp_info: %v", err)
	}
	members := map[string]btf.Member{}
	for _, m := range ks.Members {
		members[m.Name] = m
	}

	gt := reflect.TypeFor[unix.TCPInfo]()
	goSize := gt.Size()
	kSize := uintptr(ks.Size)
	switch {
	case goSize < kSize:
		t.Logf("kernel struct tcp_info is %d bytes, x/sys's %d: newer kernel fields are not read (the kernel copies min(len, size))", kSize, goSize)
	case goSize > kSize:
		t.Logf("x/sys TCPInfo is %d bytes, kernel's %d: fields past the kernel's end stay zero", goSize, kSize)
	}

	// owner names the Go field holding each byte; "" is padding or x/sys's
	// blank tail, where newer kernel fields land.
	owner := make([]string, goSize)
	for i := range gt.NumField() {
		f := gt.Field(i)
		if f.Name == "_" {
			continue
		}
		for b := f.Offset; b < f.Offset+f.Type.Size(); b++ {
			owner[b] = f.Name
		}
		kname := "tcpi_" + strings.ToLower(f.Name)
		m, ok := members[kname]
		if !ok {
			if f.Offset < kSize {
				t.Errorf("%s at byte %d: kernel has no %s, yet its struct covers that byte", f.Name, f.Offset, kname)
			} else {
				t.Logf("%s: kernel has no %s (older kernel; reads as zero)", f.Name, kname)
			}
			continue
		}
		if m.BitfieldSize != 0 {
			t.Errorf("%s: kernel's %s is a %d-bit bitfield, x/sys reads it as a %d-byte field", f.Name, kname, m.BitfieldSize, f.Type.Size())
			continue
		}
		ksz, err := btf.Sizeof(m.Type)
		if err != nil {
			t.Fatalf("size of %s: %v", kname, err)
		}
		if uintptr(m.Offset.Bytes()) != f.Offset || m.Offset%8 != 0 || uintptr(ksz) != f.Type.Size() {
			t.Errorf("%s: x/sys byte %d size %d, kernel %s bit %d size %d", f.Name, f.Offset, f.Type.Size(), kname, m.Offset, ksz)
		}
	}

	// Every kernel member inside x/sys's struct must be the Go field of its
	// name, or lie in bytes x/sys leaves unnamed: the bitfields
	// (tcpi_snd_wscale, tcpi_rcv_wscale, tcpi_delivery_rate_app_limited, ...)
	// and fields newer than x/sys.
	for _, m := range ks.Members {
		b := uintptr(m.Offset.Bytes())
		if b >= goSize {
			continue
		}
		switch name := owner[b]; {
		case name == "" && m.BitfieldSize != 0:
			t.Logf("kernel bitfield %s:%d is in byte %d, padding in x/sys (not readable through unix.TCPInfo)", m.Name, m.BitfieldSize, b)
		case name == "":
			t.Logf("kernel %s at byte %d is unnamed in x/sys (newer field, not read)", m.Name, b)
		case "tcpi_"+strings.ToLower(name) != m.Name:
			t.Errorf("kernel %s at byte %d overlaps x/sys's %s", m.Name, b, name)
		}
	}

	for _, name := range tcpInfoRead {
		f, ok := gt.FieldByName(name)
		if !ok {
			t.Errorf("x/sys TCPInfo has no %s", name)
			continue
		}
		if _, ok := members["tcpi_"+strings.ToLower(name)]; !ok || f.Offset+f.Type.Size() > kSize {
			t.Errorf("TCPSampleOf reads %s, which the kernel does not fill", name)
		}
	}
	if unsafe.Sizeof(unix.TCPInfo{}) != uintptr(unix.SizeofTCPInfo) {
		t.Errorf("unix.SizeofTCPInfo %d, struct %d: GetsockoptTCPInfo would ask for the wrong length", unix.SizeofTCPInfo, unsafe.Sizeof(unix.TCPInfo{}))
	}
}

// tcpPair is a connected loopback TCP pair.
func tcpPair(t *testing.T) (client, server *net.TCPConn) {
	t.Helper()
	ln, err := net.ListenTCP("tcp4", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan *net.TCPConn, 1)
	go func() {
		c, err := ln.AcceptTCP()
		if err != nil {
			t.Error(err)
		}
		accepted <- c
	}()
	client, err = net.DialTCP("tcp4", nil, ln.Addr().(*net.TCPAddr))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	server = <-accepted
	if server == nil {
		t.FailNow()
	}
	t.Cleanup(func() { server.Close() })
	return client, server
}

// After 1 MB over loopback both sides' TCP_INFO count it, and the sample
// carries the kernel's µs as durations.
func TestReadTCPInfoLive(t *testing.T) {
	const size = 1 << 20
	client, server := tcpPair(t)

	go func() {
		if _, err := client.Write(make([]byte, size)); err != nil {
			t.Error(err)
		}
	}()
	if _, err := io.ReadFull(server, make([]byte, size)); err != nil {
		t.Fatalf("read: %v", err)
	}

	// The last ACK may still be on its way back to the sender.
	var snd *unix.TCPInfo
	for deadline := time.Now().Add(2 * time.Second); ; {
		var err error
		if snd, err = ReadTCPInfo(client); err != nil {
			t.Fatal(err)
		}
		if snd.Bytes_acked >= size || time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	rcv, err := ReadTCPInfo(server)
	if err != nil {
		t.Fatal(err)
	}
	if snd.Bytes_acked < size {
		t.Errorf("sender bytes_acked %d, want >= %d", snd.Bytes_acked, size)
	}
	if rcv.Bytes_received < size {
		t.Errorf("receiver bytes_received %d, want >= %d", rcv.Bytes_received, size)
	}
	if snd.Rtt == 0 || snd.Snd_cwnd == 0 || snd.Snd_mss == 0 {
		t.Errorf("sender rtt %d µs, cwnd %d, mss %d: want all > 0", snd.Rtt, snd.Snd_cwnd, snd.Snd_mss)
	}

	s := TCPSampleOf(snd, 3*time.Second, size)
	if s.T != 3*time.Second || s.Bytes != size {
		t.Errorf("sample t %v bytes %d, want 3s %d", s.T, s.Bytes, size)
	}
	if want := time.Duration(snd.Rtt) * 1000; s.RTT != want {
		t.Errorf("sample rtt %v, want %v (%d µs)", s.RTT, want, snd.Rtt)
	}
	if want := time.Duration(snd.Busy_time) * 1000; s.BusyTime != want {
		t.Errorf("sample busy_time %v, want %v (%d µs)", s.BusyTime, want, snd.Busy_time)
	}
	if s.SndCwnd != snd.Snd_cwnd || s.BytesAcked != snd.Bytes_acked || s.DeliveryRate != snd.Delivery_rate {
		t.Errorf("sample %+v does not copy cwnd/bytes_acked/delivery_rate of %+v", s, *snd)
	}
	t.Logf("sender: rtt %v cwnd %d mss %d delivery %d B/s busy %v", s.RTT, s.SndCwnd, s.SndMSS, s.DeliveryRate, s.BusyTime)
}

func TestReadTCPInfoNotTCP(t *testing.T) {
	uc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer uc.Close()
	if _, err := ReadTCPInfo(uc); err == nil || !strings.HasPrefix(err.Error(), "read tcp_info: ") {
		t.Errorf("ReadTCPInfo on udp: err %v, want a read tcp_info error", err)
	}
}

func TestTCPInfoFieldValues(t *testing.T) {
	s := dump.TCPSample{
		RTT: 1500 * time.Microsecond, SndCwnd: 10, DeliveryRate: 1000,
		BytesAcked: 1 << 20, BusyTime: 2500 * time.Microsecond,
	}
	want := map[string]float64{"rtt": 1500, "snd_cwnd": 10, "delivery_rate": 8000, "bytes_acked": 1 << 20, "busy_time": 2.5}
	for name, v := range want {
		f, ok := tcpInfoField(name)
		if !ok {
			t.Fatalf("no field %s", name)
		}
		if got := f.Value(&s); got != v {
			t.Errorf("%s = %v %s, want %v", name, got, f.Unit, v)
		}
	}
	// Names follow the dump's msgpack tags so selections and dumps agree.
	tags := map[string]bool{}
	st := reflect.TypeFor[dump.TCPSample]()
	for i := range st.NumField() {
		tags[st.Field(i).Tag.Get("msgpack")] = true
	}
	for _, f := range TCPInfoFields {
		if !tags[f.Name] {
			t.Errorf("field %s is not a dump.TCPSample msgpack tag", f.Name)
		}
	}
	if got := (SelectedField{Field: TCPInfoFields[0], Label: "RTT:"}).Format(&s); got != "RTT:1500" {
		t.Errorf("Format = %q, want RTT:1500", got)
	}
}

func TestParseTCPInfoFields(t *testing.T) {
	type pick struct{ name, label string }
	tests := []struct {
		in   string
		want []pick
		err  string
	}{
		{in: "", want: nil},
		{in: "rtt", want: []pick{{"rtt", "rtt="}}},
		{in: "rtt%RTT:,snd_cwnd%cwnd=,delivery_rate", want: []pick{{"rtt", "RTT:"}, {"snd_cwnd", "cwnd="}, {"delivery_rate", "delivery_rate="}}},
		{in: "min_rtt%", want: []pick{{"min_rtt", ""}}},
		{in: " rtt , lost%L ", want: []pick{{"rtt", "rtt="}, {"lost", "L "}}},
		{in: "busy_time%a%b", want: []pick{{"busy_time", "a%b"}}},
		{in: "rtt,cwnd", err: `unknown tcp_info field "cwnd" (known: rtt, rttvar, min_rtt, snd_cwnd,`},
		{in: "RTT", err: `unknown tcp_info field "RTT"`},
		{in: "rtt,,lost", err: "empty field name"},
		{in: "%x", err: "empty field name"},
	}
	for _, tt := range tests {
		got, err := ParseTCPInfoFields(tt.in)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) || strings.Contains(err.Error(), "\n") {
				t.Errorf("ParseTCPInfoFields(%q) err %v, want one line containing %q", tt.in, err, tt.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseTCPInfoFields(%q): %v", tt.in, err)
			continue
		}
		var picks []pick
		for _, f := range got {
			picks = append(picks, pick{f.Field.Name, f.Label})
		}
		if !reflect.DeepEqual(picks, tt.want) {
			t.Errorf("ParseTCPInfoFields(%q) = %v, want %v", tt.in, picks, tt.want)
		}
	}
	if _, err := ParseTCPInfoFields("nope"); err != nil {
		for _, f := range TCPInfoFields {
			if !strings.Contains(err.Error(), f.Name) {
				t.Errorf("error %q does not list %s", err, f.Name)
			}
		}
	}
}
