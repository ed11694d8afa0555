package testbed

import (
	"fmt"
	"runtime"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// Netem says whether this kernel can emulate delay and loss (the netem
// qdisc): nil when a netem qdisc can be added, in a throwaway
// namespace, else why not. The testbed shapes with tbf either way.
func Netem() error {
	done := make(chan error, 1)
	go func() {
		// The thread enters a fresh namespace and goes back; if it cannot,
		// it stays locked and dies with the goroutine.
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			done <- fmt.Errorf("get current namespace: %w", err)
			return
		}
		defer orig.Close()
		ns, err := netns.New()
		if err != nil {
			done <- fmt.Errorf("make a namespace: %w", err)
			return
		}
		err = addNetem()
		ns.Close()
		if netns.Set(orig) == nil {
			runtime.UnlockOSThread()
		}
		done <- err
	}()
	return <-done
}

func addNetem() error {
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		return err
	}
	q := netlink.NewNetem(netlink.QdiscAttrs{LinkIndex: lo.Attrs().Index, Handle: netlink.MakeHandle(1, 0), Parent: netlink.HANDLE_ROOT},
		netlink.NetemQdiscAttrs{Latency: 1000})
	if err := netlink.QdiscAdd(q); err != nil {
		return fmt.Errorf("no netem qdisc in this kernel (sch_netem): %w", err)
	}
	return nil
}
