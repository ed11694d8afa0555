package probe

import (
	"context"
	"testing"
	"time"
)

// TestCounters reads the agent's loopback counters around an echo session
// on the same connection, and sees them rise by at least its probes.
func TestCounters(t *testing.T) {
	_, addr := startAgent(t, ServerConfig{})
	ctx := context.Background()
	c, err := Dial(ctx, addr, ClientConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	before, err := c.Counters(ctx)
	if err != nil {
		t.Fatal(err)
	}
	lo0, ok := before.Iface("lo")
	if !ok {
		t.Fatalf("no lo among %d interfaces", len(before.Ifaces))
	}
	const n, size = 50, 1000
	if _, err := c.Echo(ctx, EchoParams{Count: n, Size: size, Interval: time.Millisecond}, EchoOptions{Wait: time.Second}); err != nil {
		t.Fatal(err)
	}
	after, err := c.Counters(ctx)
	if err != nil {
		t.Fatal(err)
	}
	lo1, _ := after.Iface("lo")
	// Probes and replies both cross lo: 2·n datagrams of size bytes at least.
	if got := lo1.RxBytes - lo0.RxBytes; got < 2*n*size {
		t.Errorf("lo received %d bytes during the echo, want at least %d", got, 2*n*size)
	}
	if !after.Time.After(before.Time) {
		t.Errorf("counter times %v then %v", before.Time, after.Time)
	}
}
