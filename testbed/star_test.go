package testbed

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestStarUpDown(t *testing.T) {
	needRoot(t)
	clients := []string{"c1", "c2", "c3"}
	star, err := UpStar(StarConfig{Name: "startest", Hosts: append([]string{"srv"}, clients...), Rate: 50_000_000})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { star.Down() })
	srv, err := star.Host("srv")
	if err != nil {
		t.Fatal(err)
	}
	if want := netip.MustParseAddr("10.78.1.1"); srv.Addr != want {
		t.Errorf("server address %s, want %s", srv.Addr, want)
	}
	if _, err := UpStar(StarConfig{Name: "startest", Hosts: []string{"srv"}}); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Errorf("second UpStar: %v, want already exists", err)
	}
	for _, h := range star.all() {
		on, err := h.ActiveOffloads()
		if err != nil {
			t.Fatal(err)
		}
		for ifc, feats := range on {
			if len(feats) > 0 {
				t.Logf("%s %s: offloads the driver keeps on: %v", h.NS, ifc, feats)
			}
		}
	}

	var conn *net.UDPConn
	err = srv.Do(func() (err error) {
		conn, err = net.ListenUDP("udp4", &net.UDPAddr{IP: net.IP(srv.Addr.AsSlice()), Port: 9999})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	const perClient = 20
	for _, name := range clients {
		h, _ := star.Host(name)
		err := h.Do(func() error {
			c, err := net.DialUDP("udp4", nil, &net.UDPAddr{IP: net.IP(srv.Addr.AsSlice()), Port: 9999})
			if err != nil {
				return err
			}
			defer c.Close()
			for i := range perClient {
				if _, err := fmt.Fprintf(c, "%s %d", name, i); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	from := map[string]int{}
	buf := make([]byte, 100)
	conn.SetReadDeadline(time.Now().Add(3 * time.Second))
	for n := 0; n < perClient*len(clients); n++ {
		k, addr, err := conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			t.Fatalf("after %d datagrams: %v (by host %v)", n, err, from)
		}
		name, _, _ := strings.Cut(string(buf[:k]), " ")
		h, _ := star.Host(name)
		if addr.Addr() != h.Addr {
			t.Errorf("datagram of %s came from %s, want %s", name, addr.Addr(), h.Addr)
		}
		from[name]++
	}
	for _, name := range clients {
		if from[name] != perClient {
			t.Errorf("%s: %d datagrams reached the server, want %d", name, from[name], perClient)
		}
	}

	if err := star.Down(); err != nil {
		t.Fatal(err)
	}
	left, _ := filepath.Glob(filepath.Join(netnsDir, nsPrefix+"startest-*"))
	if len(left) > 0 {
		t.Errorf("after Down: %v", left)
	}
	if _, err := os.Stat(filepath.Join(netnsDir, nsName("startest", StarRouter))); err == nil {
		t.Error("router namespace still there")
	}
}
