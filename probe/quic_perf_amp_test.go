package probe

import (
	"context"
	"crypto/tls"
	"net"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
)

// deafConn sends through a UDP socket and counts what comes back without
// handing it on, as a spoofer's victim would: it never answers. It is a
// plain net.PacketConn, so that quic-go reads through ReadFrom.
type deafConn struct {
	u         *net.UDPConn
	sent, got atomic.Int64
}

func (c *deafConn) WriteTo(b []byte, a net.Addr) (int, error) {
	c.sent.Add(int64(len(b)))
	return c.u.WriteTo(b, a)
}

func (c *deafConn) ReadFrom(b []byte) (int, net.Addr, error) {
	for {
		n, _, err := c.u.ReadFrom(b)
		if err != nil {
			return 0, nil, err
		}
		c.got.Add(int64(n))
	}
}

func (c *deafConn) Close() error                       { return c.u.Close() }
func (c *deafConn) LocalAddr() net.Addr                { return c.u.LocalAddr() }
func (c *deafConn) SetDeadline(t time.Time) error      { return c.u.SetDeadline(t) }
func (c *deafConn) SetReadDeadline(t time.Time) error  { return c.u.SetReadDeadline(t) }
func (c *deafConn) SetWriteDeadline(t time.Time) error { return c.u.SetWriteDeadline(t) }

// serve --quic-perf answers an address that has not proved itself with no
// more bytes than it received from it: a spoofer cannot use the agent to
// amplify a flood (it sent 3.35 times the Initial's bytes before).
func TestPerfQUICNoAmplification(t *testing.T) {
	_, addr := startPerf(t, ServerConfig{})
	udp, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.MustParseAddrPort("127.0.0.1:0")))
	if err != nil {
		t.Fatal(err)
	}
	dc := &deafConn{u: udp}
	tr := &quic.Transport{Conn: dc}
	defer tr.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_, err = tr.Dial(ctx, net.UDPAddrFromAddrPort(netip.MustParseAddrPort(addr)),
		&tls.Config{NextProtos: []string{PerfALPN}, InsecureSkipVerify: true}, quicConfig())
	if err == nil {
		t.Fatal("a handshake completed without the client hearing anything")
	}
	time.Sleep(100 * time.Millisecond) // the last answers in flight
	sent, got := dc.sent.Load(), dc.got.Load()
	t.Logf("sent %d bytes, got %d back (%.2fx)", sent, got, float64(got)/float64(sent))
	if sent == 0 || got > sent {
		t.Fatalf("the agent answered %d bytes to %d from an unvalidated address", got, sent)
	}
}
