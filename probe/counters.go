package probe

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/probe-dev/probe/collector"
	"github.com/probe-dev/probe/probe/internal/wire"
)

// Counters sessions: the client asks for the agent's interface counters
// (Open{counters}) and gets one Counters frame back; a monitor reads them
// twice to compute a link's load. They move no traffic, so an exclusive
// test does not refuse them.

// maxCounterIfaces bounds the interfaces in one answer, well under wire.MaxFrame.
const maxCounterIfaces = 1024

func (s *Server) serveCounters(fc *wire.Conn) error {
	nd, err := collector.ReadNetDev()
	if err != nil {
		return refusal(wire.CodeInternal, "interface counters: %v", err)
	}
	out := &Counters{Time: time.Now()}
	for name, st := range nd {
		out.Ifaces = append(out.Ifaces, IfCounter{Name: name, RxBytes: st.RxBytes, TxBytes: st.TxBytes,
			RxPackets: st.RxPackets, TxPackets: st.TxPackets, RxDrops: st.RxDrops, TxDrops: st.TxDrops})
	}
	slices.SortFunc(out.Ifaces, func(a, b IfCounter) int {
		switch {
		case a.Name < b.Name:
			return -1
		case a.Name > b.Name:
			return 1
		}
		return 0
	})
	if len(out.Ifaces) > maxCounterIfaces {
		out.Ifaces = out.Ifaces[:maxCounterIfaces]
	}
	return fc.Write(&wire.Message{Counters: out})
}

// Counters reads the agent's interface counters.
func (c *Client) Counters(ctx context.Context) (*Counters, error) {
	if err := c.fc.Write(&wire.Message{Open: &wire.Open{Mode: wire.ModeCounters}}); err != nil {
		return nil, err
	}
	if dl, ok := ctx.Deadline(); ok {
		c.conn.SetReadDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { c.conn.SetReadDeadline(time.Now()) })
	m, err := c.expect("counters")
	stop()
	c.conn.SetReadDeadline(time.Time{})
	if err != nil {
		return nil, fmt.Errorf("interface counters: %w", err)
	}
	if len(m.Counters.Ifaces) > maxCounterIfaces {
		return nil, fmt.Errorf("interface counters: %d interfaces, limit %d", len(m.Counters.Ifaces), maxCounterIfaces)
	}
	return m.Counters, nil
}
