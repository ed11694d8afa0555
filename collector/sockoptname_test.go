package collector

import (
	"errors"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestParseSockOpt(t *testing.T) {
	tests := []struct {
		in   string
		want SockOpt
		err  string
	}{
		{in: "SO_RCVBUF=10000000", want: SockOpt{Name: "SO_RCVBUF", Level: unix.SOL_SOCKET, Opt: unix.SO_RCVBUF, Value: 10000000}},
		{in: "so_sndbuf=4096", want: SockOpt{Name: "SO_SNDBUF", Level: unix.SOL_SOCKET, Opt: unix.SO_SNDBUF, Value: 4096}},
		{in: "TCP_CONGESTION=bbr", want: SockOpt{Name: "TCP_CONGESTION", Level: unix.IPPROTO_TCP, Opt: unix.TCP_CONGESTION, Str: true, StrValue: "bbr"}},
		{in: "TCP_NODELAY=1", want: SockOpt{Name: "TCP_NODELAY", Level: unix.IPPROTO_TCP, Opt: unix.TCP_NODELAY, Value: 1}},
		{in: "IP_TOS=0x10", want: SockOpt{Name: "IP_TOS", Level: unix.IPPROTO_IP, Opt: unix.IP_TOS, Value: 16}},
		{in: "7=65536", want: SockOpt{Name: "SO_SNDBUF", Level: unix.SOL_SOCKET, Opt: unix.SO_SNDBUF, Value: 65536}},
		{in: "999=1", want: SockOpt{Name: "999", Level: unix.SOL_SOCKET, Opt: 999, Value: 1}},
		{in: "tcp.1=1", want: SockOpt{Name: "TCP_NODELAY", Level: unix.IPPROTO_TCP, Opt: unix.TCP_NODELAY, Value: 1}},
		{in: "tcp.13=cubic", want: SockOpt{Name: "TCP_CONGESTION", Level: unix.IPPROTO_TCP, Opt: unix.TCP_CONGESTION, Str: true, StrValue: "cubic"}},
		{in: "tcp.99=5", want: SockOpt{Name: "tcp.99", Level: unix.IPPROTO_TCP, Opt: 99, Value: 5}},
		{in: "ip.2=64", want: SockOpt{Name: "IP_TTL", Level: unix.IPPROTO_IP, Opt: unix.IP_TTL, Value: 64}},
		{in: "ipv6.67=32", want: SockOpt{Name: "IPV6_TCLASS", Level: unix.IPPROTO_IPV6, Opt: unix.IPV6_TCLASS, Value: 32}},
		{in: "SO_MARK=-1", want: SockOpt{Name: "SO_MARK", Level: unix.SOL_SOCKET, Opt: unix.SO_MARK, Value: -1}},

		{in: "SO_FOO=1", err: `unknown socket option "SO_FOO" (known: IPV6_TCLASS, `},
		{in: "=1", err: `unknown socket option ""`},
		{in: "udp.1=1", err: `unknown level "udp"`},
		{in: "tcp.x=1", err: `bad option number "x"`},
		{in: "tcp.-1=1", err: `bad option number "-1"`},
		{in: "SO_RCVBUF=big", err: `value "big" is not a 32-bit integer`},
		{in: "SO_RCVBUF=", err: `value "" is not a 32-bit integer`},
		{in: "SO_RCVBUF=4294967296", err: "not a 32-bit integer"},
		{in: "TCP_CONGESTION=", err: "TCP_CONGESTION: empty value"},
		{in: "SO_RCVBUF", err: `"SO_RCVBUF": want NAME=VALUE`},
	}
	for _, tt := range tests {
		got, err := ParseSockOpt(tt.in)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) || strings.Contains(err.Error(), "\n") {
				t.Errorf("ParseSockOpt(%q) = %+v, %v; want one-line error containing %q", tt.in, got, err, tt.err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParseSockOpt(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
		}
	}

	_, err := ParseSockOpt("NOPE=1")
	for _, name := range KnownSockOpts() {
		if err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("unknown-name error %v does not list %s", err, name)
		}
	}
}

func TestLookupSockOpt(t *testing.T) {
	o, err := LookupSockOpt("SO_RCVBUF")
	if err != nil || o != (SockOpt{Name: "SO_RCVBUF", Level: unix.SOL_SOCKET, Opt: unix.SO_RCVBUF}) {
		t.Errorf("LookupSockOpt(SO_RCVBUF) = %+v, %v", o, err)
	}
	if _, err := LookupSockOpt("SO_RCVBUF=1"); err == nil {
		t.Error("LookupSockOpt accepted a value")
	}
	names := KnownSockOpts()
	if !slices.IsSorted(names) || len(names) < 29 {
		t.Errorf("KnownSockOpts = %v, want >= 29 sorted names", names)
	}
	// Each name reads back as itself, so parse and print agree.
	for _, name := range names {
		if o, err := LookupSockOpt(name); err != nil || o.Name != name {
			t.Errorf("LookupSockOpt(%s) = %+v, %v", name, o, err)
		}
	}
}

// sockFD runs fn on the fd of one end of a loopback TCP connection.
func sockFD(t *testing.T, fn func(fd int)) {
	t.Helper()
	client, _ := tcpPair(t)
	rc, err := client.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	if err := rc.Control(func(fd uintptr) { fn(int(fd)) }); err != nil {
		t.Fatal(err)
	}
}

func availableCC(t *testing.T) []string {
	b, err := os.ReadFile("/proc/sys/net/ipv4/tcp_available_congestion_control")
	if err != nil {
		t.Skipf("cannot list congestion controls: %v", err)
	}
	return strings.Fields(string(b))
}

func TestSockOptLive(t *testing.T) {
	setGet := func(t *testing.T, fd int, set, get string) string {
		t.Helper()
		o, err := ParseSockOpt(set)
		if err != nil {
			t.Fatal(err)
		}
		if err := o.Set(fd); err != nil {
			t.Fatal(err)
		}
		g, err := LookupSockOpt(get)
		if err != nil {
			t.Fatal(err)
		}
		v, err := g.Get(fd)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	atLeast := func(t *testing.T, v string, min int) {
		t.Helper()
		if n, err := strconv.Atoi(v); err != nil || n < min {
			t.Errorf("read back %q, want an integer >= %d", v, min)
		}
	}

	sockFD(t, func(fd int) {
		t.Run("SO_RCVBUF", func(t *testing.T) {
			// The kernel doubles the request but caps it at rmem_max first.
			if b, err := os.ReadFile("/proc/sys/net/core/rmem_max"); err == nil {
				if m, _ := strconv.Atoi(strings.TrimSpace(string(b))); m < 500000 {
					t.Skipf("net.core.rmem_max is %d, too small to hold 1000000 doubled", m)
				}
			}
			atLeast(t, setGet(t, fd, "SO_RCVBUF=1000000", "SO_RCVBUF"), 1000000)
		})
		t.Run("SO_SNDBUF by number", func(t *testing.T) {
			atLeast(t, setGet(t, fd, "7=65536", "SO_SNDBUF"), 65536)
		})
		t.Run("TCP_NODELAY", func(t *testing.T) {
			if v := setGet(t, fd, "TCP_NODELAY=1", "TCP_NODELAY"); v != "1" {
				t.Errorf("TCP_NODELAY read back %q, want 1", v)
			}
			if v := setGet(t, fd, "tcp.1=0", "tcp.1"); v != "0" {
				t.Errorf("tcp.1 read back %q, want 0", v)
			}
		})
		t.Run("TCP_CONGESTION", func(t *testing.T) {
			cc := availableCC(t)
			// Without CAP_NET_ADMIN only tcp_allowed_congestion_control may be set.
			if slices.Contains(cc, "cubic") && os.Geteuid() == 0 {
				if v := setGet(t, fd, "TCP_CONGESTION=cubic", "TCP_CONGESTION"); v != "cubic" {
					t.Errorf("TCP_CONGESTION read back %q, want cubic", v)
				}
			}
			o, _ := ParseSockOpt("TCP_CONGESTION=bbr")
			err := o.Set(fd)
			switch {
			case err == nil:
				g, _ := LookupSockOpt("TCP_CONGESTION")
				if v, err := g.Get(fd); err != nil || v != "bbr" {
					t.Errorf("TCP_CONGESTION read back %q, %v; want bbr", v, err)
				}
			case slices.Contains(cc, "bbr"):
				t.Errorf("set bbr, which the kernel lists as available: %v", err)
			case !strings.Contains(err.Error(), `"bbr" not`):
				t.Errorf("set bbr error %q does not say bbr is unavailable", err)
			default:
				t.Logf("bbr not available here: %v", err)
			}
		})
		t.Run("TCP_CONGESTION unknown", func(t *testing.T) {
			o, _ := ParseSockOpt("TCP_CONGESTION=nosuchcc")
			err := o.Set(fd)
			if err == nil || !errors.Is(err, unix.ENOENT) ||
				!strings.Contains(err.Error(), `congestion control "nosuchcc" not available`) {
				t.Errorf("set nosuchcc: %v, want a not-available error wrapping ENOENT", err)
			}
		})
		t.Run("unsupported number", func(t *testing.T) {
			o, _ := ParseSockOpt("tcp.999=1")
			if err := o.Set(fd); err == nil || !strings.HasPrefix(err.Error(), "set tcp.999=1: ") {
				t.Errorf("set tcp.999: %v, want an error naming the option", err)
			}
		})
	})
}
