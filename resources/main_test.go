package resources

import (
	"bufio"
	"compress/gzip"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/probe-dev/probe/collector"
	"golang.org/x/sys/unix"
)

// helperEnv makes the test binary a helper process instead of running the
// tests (see TestMain).
const helperEnv = "RESOURCES_TEST_HELPER"

// TestMain lets the test binary be the shim of held commands, and a helper
// with a known workload.
func TestMain(m *testing.M) {
	collector.RunIfHeld()
	if h := os.Getenv(helperEnv); h != "" {
		if err := helper(h); err != nil {
			fmt.Fprintln(os.Stderr, "helper:", err)
			os.Exit(2)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// helper runs a workload: "udp" sends udpDatagrams datagrams to itself on
// 127.0.0.1 and reads them back.
func helper(name string) error {
	switch name {
	case "udp":
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			return err
		}
		buf := make([]byte, 64)
		for range udpDatagrams {
			if _, err := c.WriteTo([]byte("datagram"), c.LocalAddr()); err != nil {
				return err
			}
			if _, _, err := c.ReadFrom(buf); err != nil {
				return err
			}
			time.Sleep(2 * time.Millisecond)
		}
		return nil
	}
	return fmt.Errorf("no helper %q", name)
}

const udpDatagrams = 100

// helperCmd runs the test binary as helper name.
func helperCmd(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), helperEnv+"="+name)
	return cmd
}

// newSched loads the scheduler watch, or skips the test saying why.
func newSched(t *testing.T) *collector.SchedWatch {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (CAP_BPF, CAP_PERFMON) to load the scheduler watch")
	}
	w, err := collector.NewSchedWatch()
	if errors.Is(err, unix.EPERM) || errors.Is(err, ebpf.ErrNotSupported) {
		t.Skipf("no scheduler watch here: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	return w
}

// kernelTick is how late the kernel's runtime of a running thread may be:
// one tick, 1/CONFIG_HZ, which /proc/config.gz tells when the kernel has
// it; 10 ms (HZ=100, the slowest) otherwise.
func kernelTick(t *testing.T) time.Duration {
	f, err := os.Open("/proc/config.gz")
	if err == nil {
		defer f.Close()
		if z, err := gzip.NewReader(f); err == nil {
			s := bufio.NewScanner(z)
			for s.Scan() {
				if v, ok := strings.CutPrefix(s.Text(), "CONFIG_HZ="); ok {
					if hz, err := strconv.Atoi(v); err == nil && hz > 0 {
						return time.Second / time.Duration(hz)
					}
				}
			}
		}
	}
	t.Log("no CONFIG_HZ in /proc/config.gz: taking a tick of 10 ms")
	return 10 * time.Millisecond
}
