package main

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/probe-dev/probe/collector/dump"
	"github.com/probe-dev/probe/probe"
)

// The load row's clients: each its own source address, so that the
// per-address limits, meant for one stranger, do not stand in for the
// total ones.
const (
	echoClients = 64
	tcpClients  = 16
	mixEach     = 2 // capacity, quic, reverse tcp, back-to-back echo
)

// clientStagger spaces the load row's clients' arrivals.
const clientStagger = 25 * time.Millisecond

// unexplainedPrefix marks an error that names no limit.
const unexplainedPrefix = "unexplained: "

var limitFlag = regexp.MustCompile(`\(serve (--[a-z-]+)\)`)

// lossyPath is how a capacity run ends when the path drops train packets
// too often to measure.
const lossyPath = "the path is too lossy for packet trains"

// errLate marks a session whose replies all came after the client stopped
// waiting: a host too loaded for the client's wait, not an agent's fault.
var errLate = errors.New("late")

// explain names the limit an error comes from, or marks it unexplained.
func explain(err error) string {
	if errors.Is(err, errLate) {
		return "replies after the client's 200 ms idle wait on a loaded host (the agent answered, late)"
	}
	if strings.Contains(err.Error(), lossyPath) {
		return "capacity: the loaded loopback lost packets of 30 trains in a row (the client's verdict on the path, not a refusal)"
	}
	if m := limitFlag.FindStringSubmatch(err.Error()); m != nil {
		return "refused by the agent's " + m[1]
	}
	msg := err.Error()
	if len(msg) > 120 {
		msg = msg[:120] + "…"
	}
	return unexplainedPrefix + msg
}

// loadClient runs sessions of one kind back to back until ctx ends.
type loadClient struct {
	src     netip.Addr
	session func(ctx context.Context, c *probe.Client) error
	pause   time.Duration
}

func (b *bench) load(ctx context.Context, d time.Duration) result {
	// New sessions start until d has passed; those running then finish.
	stop, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var clients []loadClient
	n := 0
	add := func(k int, pause time.Duration, fn func(context.Context, *probe.Client) error) {
		for range k {
			n++
			clients = append(clients, loadClient{src: netip.AddrFrom4([4]byte{127, 0, 1, byte(n)}), session: fn, pause: pause})
		}
	}
	echo := func(p probe.EchoParams) func(context.Context, *probe.Client) error {
		return func(ctx context.Context, c *probe.Client) error {
			res, err := c.Echo(ctx, p, probe.EchoOptions{Wait: 2 * time.Second}) // measure's default
			if err != nil {
				return err
			}
			answered := 0
			for _, r := range res.Records {
				if r.Replies > 0 {
					return nil
				}
				if r.AgentRx != (dump.Stamps{}) {
					answered++
				}
			}
			pt := res.Point
			if answered > 0 {
				// The client stops waiting 200 ms after its last probe
				// when no reply came: the agent was late, not silent.
				return fmt.Errorf("%w: the agent answered %d of %d probes after the client's 200 ms idle wait (agent socket drops %d)",
					errLate, answered, len(res.Records), pt.AgentSocketDrops)
			}
			return fmt.Errorf("none of %d probes answered (agent ignored %d, rate-limited %d, socket drops: agent %d, client %d)",
				len(res.Records), res.AgentIgnored, pt.AgentLimited, pt.AgentSocketDrops, pt.ClientSocketDrops)
		}
	}
	tcp := func(dir probe.Direction) func(context.Context, *probe.Client) error {
		return func(ctx context.Context, c *probe.Client) error {
			res, err := c.TCP(ctx, probe.TCPParams{Streams: 1, Direction: dir, Bytes: 2 << 20, WriteSize: 64 << 10, Interval: 100 * time.Millisecond})
			if err != nil {
				return err
			}
			from, to := res.Client, res.Agent
			if dir == probe.DirReverse {
				from, to = to, from
			}
			if len(from.Streams) != 1 || len(to.Streams) != 1 || from.Streams[0].Sent != 2<<20 || to.Streams[0].Received != 2<<20 {
				return fmt.Errorf("tcp %s: not every byte arrived", dir)
			}
			return nil
		}
	}
	add(echoClients, 100*time.Millisecond, echo(probe.EchoParams{Count: 100, Size: 64, Interval: 10 * time.Millisecond}))
	add(tcpClients, 250*time.Millisecond, tcp(probe.DirForward))
	add(mixEach, 500*time.Millisecond, func(ctx context.Context, c *probe.Client) error {
		res, err := c.Capacity(ctx, probe.CapacityConfig{Quick: true})
		if err == nil && len(res.Trains) == 0 {
			err = errors.New("capacity: no train measured")
		}
		return err
	})
	add(mixEach, 500*time.Millisecond, func(ctx context.Context, c *probe.Client) error {
		res, err := c.QUIC(ctx, probe.QUICParams{Streams: 1, Direction: probe.DirReverse, Bytes: 4 << 20, WriteSize: 64 << 10,
			Interval: 100 * time.Millisecond, Pings: 3, PingEvery: 10 * time.Millisecond}, probe.QUICTrust{})
		if err != nil {
			return err
		}
		var got uint64
		for _, s := range res.Client.Streams {
			got += s.Received
		}
		if got != 4<<20 {
			return fmt.Errorf("quic: %d of %d bytes arrived", got, 4<<20)
		}
		return nil
	})
	add(mixEach, 250*time.Millisecond, tcp(probe.DirReverse))
	add(mixEach, 250*time.Millisecond, echo(probe.EchoParams{Count: 1000, Size: 64}))

	var mu sync.Mutex
	errs := map[string]int{}
	ok, sessions := 0, 0
	var wg sync.WaitGroup
	for i, lc := range clients {
		wg.Add(1)
		go func() {
			// Clients arrive over 2 s, not in one instant: 88 TLS
			// handshakes at once would pass --max-preauth.
			time.Sleep(time.Duration(i) * clientStagger)
			defer wg.Done()
			good, done := b.loop(ctx, stop, lc, func(err error) {
				mu.Lock()
				errs[explain(err)]++
				mu.Unlock()
			})
			mu.Lock()
			sessions += done
			if good {
				ok++
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	return result{clients: fmt.Sprintf("%d of %d (%d sessions)", ok, len(clients), sessions), errors: errs, failed: ok != len(clients)}
}

// loop runs lc's sessions on one connection (a new one after an error)
// until stop ends; good: none failed.
func (b *bench) loop(ctx, stop context.Context, lc loadClient, fail func(error)) (good bool, done int) {
	good = true
	var c *probe.Client
	defer func() {
		if c != nil {
			c.Close()
		}
	}()
	for stop.Err() == nil {
		if c == nil {
			var err error
			if c, err = probe.Dial(ctx, b.agent.addr.String(), b.clientConfig(lc.src)); err != nil {
				good = false
				fail(err)
				time.Sleep(time.Second)
				c = nil
				continue
			}
		}
		err := lc.session(ctx, c)
		if err != nil {
			good = false
			fail(err)
			c.Close()
			c = nil
			continue
		}
		done++
		select {
		case <-stop.Done():
		case <-time.After(lc.pause):
		}
	}
	return good, done
}
