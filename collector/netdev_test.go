package collector

import (
	"net"
	"testing"
)

func TestNetDevLoopback(t *testing.T) {
	const n = 200
	rx, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer rx.Close()
	tx, err := net.Dial("udp4", rx.LocalAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Close()

	before, err := ReadNetDev()
	if err != nil {
		t.Fatal(err)
	}
	lo0, ok := before["lo"]
	if !ok {
		t.Fatalf("no lo in %v", before)
	}
	payload := make([]byte, 100)
	for range n {
		if _, err := tx.Write(payload); err != nil {
			t.Fatal(err)
		}
	}
	after, err := ReadNetDev()
	if err != nil {
		t.Fatal(err)
	}
	lo1 := after["lo"]
	t.Logf("lo after %d datagrams of %d B: rx +%d pkts +%d B, tx +%d pkts +%d B", n, len(payload),
		lo1.RxPackets-lo0.RxPackets, lo1.RxBytes-lo0.RxBytes, lo1.TxPackets-lo0.TxPackets, lo1.TxBytes-lo0.TxBytes)
	// Each datagram is at least its payload plus IPv4 and UDP headers.
	if d := lo1.TxPackets - lo0.TxPackets; d < n {
		t.Errorf("lo tx packets grew by %d, want >= %d", d, n)
	}
	if d := lo1.RxPackets - lo0.RxPackets; d < n {
		t.Errorf("lo rx packets grew by %d, want >= %d", d, n)
	}
	if d := lo1.TxBytes - lo0.TxBytes; d < n*uint64(len(payload)+28) {
		t.Errorf("lo tx bytes grew by %d, want >= %d", d, n*(len(payload)+28))
	}
}
