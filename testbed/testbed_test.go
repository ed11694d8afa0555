package testbed

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/safchain/ethtool"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

func needRoot(t *testing.T) {
	t.Helper()
	if err := CheckPrivileges(); err != nil {
		t.Skipf("skipping: the test builds network namespaces, veths and qdiscs: %v", err)
	}
}

// uniqueName keeps testbeds of concurrent test processes apart.
func uniqueName(kind string) string {
	return fmt.Sprintf("t%d%s", os.Getpid(), kind)
}

// up builds a testbed that is removed when the test ends, whatever happens.
func up(t *testing.T, cfg Config) *Testbed {
	t.Helper()
	tb, err := Up(cfg)
	if err != nil {
		t.Fatalf("Up(%+v): %v", cfg, err)
	}
	t.Cleanup(func() {
		if err := tb.Down(); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	return tb
}

func TestUpDown(t *testing.T) {
	needRoot(t)
	for _, router := range []bool{false, true} {
		kind := map[bool]string{false: "direct", true: "router"}[router]
		t.Run(kind, func(t *testing.T) {
			name := uniqueName(kind[:1])
			tb := up(t, Config{Name: name, Router: router, Rate: 20e6})

			if (tb.R != nil) != router || tb.MTU != 1500 {
				t.Fatalf("testbed %+v: want router %v, MTU 1500", tb, router)
			}
			for _, h := range tb.Hosts() {
				if want := "probe-" + name + "-" + h.Name; h.NS != want || !nsExists(h.NS) {
					t.Errorf("host %s: namespace %q (exists %v), want %q", h.Name, h.NS, nsExists(h.NS), want)
				}
			}
			checkStatus(t, tb)
			checkOffloads(t, tb)
			udpEcho(t, tb.A, tb.B, 10)
			udpEcho(t, tb.B, tb.A, 10)

			opened, err := Open(name)
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			if (opened.R != nil) != router || opened.MTU != tb.MTU || opened.B.Addr != tb.B.Addr {
				t.Errorf("Open = %+v, want the testbed Up made", opened)
			}
			if _, err := tb.Host("x"); err == nil {
				t.Error("Host(x) succeeded")
			}
			if _, err := Up(Config{Name: name}); err == nil || !strings.Contains(err.Error(), "already exists") {
				t.Errorf("second Up of %s: %v, want an 'already exists' error", name, err)
			}

			if err := tb.Shape(0, 0, 0); err != nil {
				t.Fatalf("Shape(0): %v", err)
			}
			for _, h := range tb.Status().Hosts {
				for _, ifc := range h.Ifaces {
					if ifc.Qdisc.Kind == "tbf" {
						t.Errorf("after Shape(0) %s/%s still has %v", h.Name, ifc.Name, ifc.Qdisc)
					}
				}
			}

			if err := tb.Down(); err != nil {
				t.Fatalf("Down: %v", err)
			}
			checkGone(t, name)
		})
	}
}

// checkStatus reads addresses, link state and qdiscs back from the kernel.
func checkStatus(t *testing.T, tb *Testbed) {
	t.Helper()
	st := tb.Status()
	for i, h := range tb.Hosts() {
		hs := st.Hosts[i]
		if hs.Err != nil {
			t.Fatalf("status of %s: %v", h.NS, hs.Err)
		}
		for _, want := range h.Ifaces {
			j := slices.IndexFunc(hs.Ifaces, func(s IfaceStatus) bool { return s.Name == want.Name })
			if j < 0 {
				t.Errorf("%s: no interface %s", h.NS, want.Name)
				continue
			}
			got := hs.Ifaces[j]
			if !got.Up || got.MTU != 1500 || !slices.Equal(got.Addrs, []netip.Prefix{want.Prefix}) {
				t.Errorf("%s/%s: up %v, MTU %d, addresses %v; want up, 1500, %v", h.NS, want.Name, got.Up, got.MTU, got.Addrs, want.Prefix)
			}
			wantQ := Qdisc{Kind: "noqueue"}
			if want.Bottleneck {
				wantQ = Qdisc{Kind: "tbf", Rate: 20e6, Burst: 1600, Limit: 64 * 1514}
			}
			if got.Qdisc != wantQ {
				t.Errorf("%s/%s: qdisc %v, want %v", h.NS, want.Name, got.Qdisc, wantQ)
			}
		}
	}
}

// checkOffloads reads the features with ethtool from inside each namespace.
func checkOffloads(t *testing.T, tb *Testbed) {
	t.Helper()
	for _, h := range tb.Hosts() {
		err := h.Do(func() error {
			e, err := ethtool.NewEthtool()
			if err != nil {
				return err
			}
			defer e.Close()
			for _, ifc := range h.Ifaces {
				feats, err := e.Features(ifc.Name)
				if err != nil {
					return fmt.Errorf("features of %s: %w", ifc.Name, err)
				}
				for _, f := range []string{"rx-gro", "tx-generic-segmentation", "tx-tcp-segmentation", "tx-tcp6-segmentation", "tx-udp-segmentation"} {
					if on, ok := feats[f]; !ok || on {
						t.Errorf("%s/%s: %s present %v, on %v; want present and off", h.NS, ifc.Name, f, ok, on)
					}
				}
			}
			return nil
		})
		if err != nil {
			t.Fatalf("read offloads in %s: %v", h.NS, err)
		}
	}
}

// udpEcho sends n datagrams from a socket made inside from's namespace to one made inside
// to's namespace, which echoes them back.
func udpEcho(t *testing.T, from, to *Host, n int) {
	t.Helper()
	var srv, cli *net.UDPConn
	err := to.Do(func() (err error) {
		srv, err = net.ListenUDP("udp4", &net.UDPAddr{IP: to.Addr.AsSlice()})
		return err
	})
	if err != nil {
		t.Fatalf("listen in %s: %v", to.NS, err)
	}
	defer srv.Close()
	go func() {
		buf := make([]byte, 2048)
		for {
			srv.SetReadDeadline(time.Now().Add(5 * time.Second))
			k, addr, err := srv.ReadFromUDP(buf)
			if err != nil {
				return
			}
			srv.WriteToUDP(buf[:k], addr)
		}
	}()
	err = from.Do(func() (err error) {
		cli, err = net.DialUDP("udp4", nil, srv.LocalAddr().(*net.UDPAddr))
		return err
	})
	if err != nil {
		t.Fatalf("dial from %s: %v", from.NS, err)
	}
	defer cli.Close()
	buf := make([]byte, 2048)
	for i := range n {
		msg := fmt.Sprintf("ping %d from %s", i, from.Name)
		if _, err := cli.Write([]byte(msg)); err != nil {
			t.Fatalf("send %q: %v", msg, err)
		}
		cli.SetReadDeadline(time.Now().Add(2 * time.Second))
		k, err := cli.Read(buf)
		if err != nil {
			t.Fatalf("%s -> %s: echo of %q: %v", from.Name, to.Name, msg, err)
		}
		if string(buf[:k]) != msg {
			t.Fatalf("%s -> %s: echo %q, want %q", from.Name, to.Name, buf[:k], msg)
		}
	}
}

func checkGone(t *testing.T, name string) {
	t.Helper()
	for _, h := range []string{"a", "b", "r"} {
		if ns := nsName(name, h); nsExists(ns) {
			t.Errorf("namespace %s still exists", ns)
		}
	}
	if _, err := Open(name); !errors.Is(err, ErrNoTestbed) {
		t.Errorf("Open(%s) after Down: %v, want ErrNoTestbed", name, err)
	}
	sts, err := List()
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	for _, st := range sts {
		if st.Name == name {
			t.Errorf("List after Down still has %+v", st)
		}
	}
}

func TestUpCleansUpOnFailure(t *testing.T) {
	needRoot(t)
	name := uniqueName("f")
	testHookAfterBuild = func() error { return errors.New("injected failure") }
	defer func() { testHookAfterBuild = nil }()
	tb, err := Up(Config{Name: name, Router: true})
	if err == nil {
		tb.Down()
		t.Fatal("Up succeeded despite the injected failure")
	}
	checkGone(t, name)

	// Refused before anything is built.
	for _, cfg := range []Config{{Name: name, Rate: 20e6, Burst: 1000}, {Name: "bad/name"}, {Name: name, MTU: 20}} {
		if _, err := Up(cfg); err == nil {
			t.Errorf("Up(%+v) succeeded", cfg)
		}
		checkGone(t, name)
	}
}

func TestDownAll(t *testing.T) {
	needRoot(t)
	leftover := fmt.Sprintf("probe-leftover%d-a", os.Getpid())
	if err := makeLeftover(leftover); err != nil {
		t.Fatalf("make leftover namespace: %v", err)
	}
	t.Cleanup(func() { deleteNamespace(leftover) })

	sts, err := List()
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	if !slices.ContainsFunc(sts, func(s Status) bool {
		return s.Name == strings.TrimSuffix(strings.TrimPrefix(leftover, "probe-"), "-a") && len(s.Hosts) == 1 && s.Hosts[0].Name == "a" && s.Hosts[0].Err == nil
	}) {
		t.Errorf("List = %+v, want the leftover testbed with host a", sts)
	}

	all, err := probeNamespaces()
	if err != nil {
		t.Fatal(err)
	}
	var removed []string
	if !slices.Equal(all, []string{leftover}) {
		// DownAll would tear down testbeds of tests running in parallel in other
		// packages: remove only ours, through the same code.
		t.Logf("other probe namespaces exist (%v): removing only %s", all, leftover)
		removed, err = removeNamespaces([]string{leftover})
	} else {
		removed, err = DownAll()
	}
	if err != nil || !slices.Equal(removed, []string{leftover}) {
		t.Errorf("DownAll = %v, %v; want [%s]", removed, err, leftover)
	}
	if nsExists(leftover) {
		t.Errorf("%s still exists", leftover)
	}
}

// makeLeftover creates a bare named namespace the way a crashed run leaves one.
func makeLeftover(name string) error {
	orig, err := netns.Get()
	if err != nil {
		return err
	}
	defer orig.Close()
	return inNS(orig, func() error {
		ns, err := netns.NewNamed(name)
		if err != nil {
			return err
		}
		return ns.Close()
	})
}

func TestStart(t *testing.T) {
	needRoot(t)
	tb := up(t, Config{Name: uniqueName("s")})
	var st unix.Stat_t
	if err := unix.Stat(filepath.Join(netnsDir, tb.B.NS), &st); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	cmd := exec.Command("readlink", "/proc/self/ns/net")
	cmd.Stdout = &out
	if err := tb.B.Start(cmd); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("readlink: %v", err)
	}
	if got, want := strings.TrimSpace(out.String()), fmt.Sprintf("net:[%d]", st.Ino); got != want {
		t.Errorf("child's namespace %s, want %s (that of %s)", got, want, tb.B.NS)
	}

	out.Reset()
	cmd = exec.Command("cat", "/proc/net/dev")
	cmd.Stdout = &out
	if err := tb.A.Start(cmd); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("cat: %v", err)
	}
	if !strings.Contains(out.String(), "veth0:") {
		t.Errorf("/proc/net/dev inside %s lacks veth0:\n%s", tb.A.NS, out.String())
	}

	if idx, err := tb.A.Ifindex(); err != nil || idx <= 1 {
		t.Errorf("Ifindex = %d, %v", idx, err)
	}
}
