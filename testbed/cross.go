package testbed

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strconv"
	"time"
)

// ShapeIface puts a tbf of rate bit/s (burst and limit in bytes, 0 for the
// defaults) at the root of one interface of h, whether or not the testbed
// counts it as a bottleneck. With Shape on the router's interfaces it builds a
// path whose narrow link (a's egress) is not its tight one (r's egress loaded
// by cross traffic).
func (tb *Testbed) ShapeIface(h *Host, ifname string, rate uint64, burst, limit uint32) error {
	if err := CheckPrivileges(); err != nil {
		return err
	}
	q, burst, err := tb.newTbf(rate, burst, limit)
	if err != nil {
		return err
	}
	return shapeIface(h.NS, ifname, q, burst)
}

// Cross is cross traffic from one host of the testbed to another, made by
// iperf3. It ends by itself after its duration; Stop ends it sooner.
type Cross struct {
	server, client *exec.Cmd
	done           chan struct{}
}

// CrossTraffic starts iperf3 sending from one host to another's address for
// d: a server in to, a client in from with args (e.g. "-u", "-b", "40M", or
// "-l", "500" for smaller datagrams). Both processes are bounded by d and
// killed by Stop.
func CrossTraffic(ctx context.Context, from, to *Host, port int, d time.Duration, args ...string) (*Cross, error) {
	secs := strconv.Itoa(max(1, int(d.Round(time.Second)/time.Second)))
	srv := exec.CommandContext(ctx, "iperf3", "-s", "-1", "-p", strconv.Itoa(port), "-B", to.Addr.String())
	if err := to.Start(srv); err != nil {
		return nil, fmt.Errorf("cross traffic: %w", err)
	}
	c := &Cross{server: srv, done: make(chan struct{})}
	// The client may only connect once the server listens; a test connection
	// would use up the one test -1 serves.
	time.Sleep(500 * time.Millisecond)
	cargs := append([]string{"-c", to.Addr.String(), "-p", strconv.Itoa(port), "-t", secs}, args...)
	cli := exec.CommandContext(ctx, "iperf3", cargs...)
	if err := from.Start(cli); err != nil {
		c.Stop()
		return nil, fmt.Errorf("cross traffic: %w", err)
	}
	c.client = cli
	go func() {
		cli.Wait()
		close(c.done)
	}()
	return c, nil
}

// Stop kills both iperf3 processes and waits for them.
func (c *Cross) Stop() error {
	var errs []error
	if c.client != nil && c.client.Process != nil {
		c.client.Process.Kill()
		<-c.done
	}
	if c.server.Process != nil {
		c.server.Process.Kill()
		if err := c.server.Wait(); err != nil && !isKilled(err) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func isKilled(err error) bool {
	var ee *exec.ExitError
	return errors.As(err, &ee)
}

// TxCounters reads the bytes and packets h's testbed interface sent: what a
// tool put on the path, to compare with the path's rate.
func (h *Host) TxCounters() (bytes, packets uint64, err error) {
	nh, err := handleAt(h.NS)
	if err != nil {
		return 0, 0, err
	}
	defer nh.Close()
	l, err := nh.LinkByName(h.Ifname)
	if err != nil {
		return 0, 0, fmt.Errorf("read counters of %s in %s: %w", h.Ifname, h.NS, err)
	}
	s := l.Attrs().Statistics
	return s.TxBytes, s.TxPackets, nil
}
