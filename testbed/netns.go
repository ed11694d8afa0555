package testbed

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// netnsDir is where `ip netns add` and netns.NewNamed bind-mount named namespaces.
const netnsDir = "/run/netns"

// nsPrefix starts every namespace the testbed makes, so leftovers can be found.
const nsPrefix = "probe-"

// Do runs fn on an OS thread switched into h's namespace and switches the thread back
// afterwards. Sockets and links fn creates stay in the namespace; goroutines fn starts
// run on other threads, in the process's own namespace. Inside fn, /proc/net and
// /proc/self/net still show the main thread's namespace: read /proc/thread-self/net.
func (h *Host) Do(fn func() error) error {
	ns, err := netns.GetFromName(h.NS)
	if err != nil {
		return fmt.Errorf("open namespace %s: %w", h.NS, err)
	}
	defer ns.Close()
	return inNS(ns, fn)
}

// Start starts cmd inside h's namespace: the child is forked from a thread that sits in
// the namespace and inherits it. Wait for it as usual.
func (h *Host) Start(cmd *exec.Cmd) error {
	if err := h.Do(cmd.Start); err != nil {
		return fmt.Errorf("start %s in %s: %w", cmd.Path, h.NS, err)
	}
	return nil
}

// Ifindex returns the index of h's testbed interface inside its namespace.
func (h *Host) Ifindex() (int, error) {
	nh, err := handleAt(h.NS)
	if err != nil {
		return 0, err
	}
	defer nh.Close()
	l, err := nh.LinkByName(h.Ifname)
	if err != nil {
		return 0, fmt.Errorf("find %s in %s: %w", h.Ifname, h.NS, err)
	}
	return l.Attrs().Index, nil
}

// inNS runs fn on a fresh locked goroutine so that a failed switch back can never leak a
// thread in the wrong namespace: such a thread stays locked and dies with the goroutine.
func inNS(target netns.NsHandle, fn func() error) error {
	type result struct {
		err   error
		panic any
	}
	done := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			done <- result{err: fmt.Errorf("get current namespace: %w", err)}
			return
		}
		defer orig.Close()
		if err := netns.Set(target); err != nil {
			runtime.UnlockOSThread()
			done <- result{err: fmt.Errorf("enter namespace: %w", err)}
			return
		}
		var r result
		func() {
			defer func() { r.panic = recover() }()
			r.err = fn()
		}()
		if err := netns.Set(orig); err != nil {
			r.err = errors.Join(r.err, fmt.Errorf("return to own namespace: %w", err))
		} else {
			runtime.UnlockOSThread()
		}
		done <- r
	}()
	r := <-done
	if r.panic != nil {
		panic(r.panic)
	}
	return r.err
}

// createNamespaces makes the named namespaces and runs setup inside each while the thread
// is still there. It returns the names it created, also on error, for the caller to remove.
func createNamespaces(names []string, setup func(ns string) error) ([]string, error) {
	var created []string
	if err := shareNetnsDir(); err != nil {
		return nil, err
	}
	orig, err := netns.Get()
	if err != nil {
		return nil, fmt.Errorf("get current namespace: %w", err)
	}
	defer orig.Close()
	// NewNamed unshares the calling thread into the new namespace: inNS switches back.
	err = inNS(orig, func() error {
		for _, name := range names {
			ns, err := netns.NewNamed(name)
			if err != nil {
				if errors.Is(err, fs.ErrExist) {
					return fmt.Errorf("create namespace %s: it already exists", name)
				}
				return fmt.Errorf("create namespace %s: %w", name, err)
			}
			ns.Close()
			created = append(created, name)
			if err := setup(name); err != nil {
				return err
			}
		}
		return nil
	})
	return created, err
}

// shareNetnsDir makes netnsDir a mount point of its own with shared
// propagation, as `ip netns add` does before it mounts a namespace. A
// namespace mounted on a plain /run/netns is hidden as soon as iproute2
// bind-mounts the folder over itself (vm/up.sh's `ip netns add` did, while a
// scenario ran), and can then be neither unmounted (EINVAL) nor removed
// (EBUSY) until reboot. Shared, its unmounts also reach mount namespaces
// copied from this one.
func shareNetnsDir() error {
	if err := os.MkdirAll(netnsDir, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", netnsDir, err)
	}
	err := unix.Mount("", netnsDir, "none", unix.MS_SHARED|unix.MS_REC, "")
	if errors.Is(err, unix.EINVAL) { // not a mount point yet
		if err = unix.Mount(netnsDir, netnsDir, "none", unix.MS_BIND|unix.MS_REC, ""); err == nil {
			err = unix.Mount("", netnsDir, "none", unix.MS_SHARED|unix.MS_REC, "")
		}
	}
	if err != nil {
		return fmt.Errorf("make %s a shared mount: %w", netnsDir, err)
	}
	return nil
}

// deleteNamespace unmounts and removes a named namespace; a missing one is not an error.
// The kernel frees the namespace, and the veths in it, once nothing else holds it.
func deleteNamespace(name string) error {
	err := netns.DeleteNamed(name)
	if errors.Is(err, unix.EINVAL) {
		// Not a mount point: a stale file from a crash between create and mount.
		err = os.Remove(filepath.Join(netnsDir, name))
	}
	if err != nil && !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("delete namespace %s: %w", name, err)
	}
	return nil
}

// probeNamespaces lists the names of all probe-* namespaces, sorted.
func probeNamespaces() ([]string, error) {
	ents, err := os.ReadDir(netnsDir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list namespaces: %w", err)
	}
	var names []string
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), nsPrefix) {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	return names, nil
}

func nsExists(name string) bool {
	_, err := os.Stat(filepath.Join(netnsDir, name))
	return err == nil
}

// handleAt opens a rtnetlink handle inside the named namespace; no thread switching is
// needed for the calls made through it.
func handleAt(name string) (*netlink.Handle, error) {
	ns, err := netns.GetFromName(name)
	if err != nil {
		return nil, fmt.Errorf("open namespace %s: %w", name, err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("open netlink in %s: %w", name, err)
	}
	return h, nil
}

// writeSysctl writes a /proc/sys file of the calling thread's network namespace.
func writeSysctl(path, value string) error {
	if err := os.WriteFile(path, []byte(value), 0o644); err != nil {
		return fmt.Errorf("set %s: %w", strings.TrimPrefix(path, "/proc/sys/"), err)
	}
	return nil
}
