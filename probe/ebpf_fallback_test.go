package probe

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/probe-dev/probe/collector"
	"github.com/probe-dev/probe/estimator"
)

// fullStamper is an interface whose TCX chain is full: the kernel refuses
// one more program (ERANGE), as it did with some 64 clients on one host.
type fullStamper struct{}

func (fullStamper) Attach(int) error { return fmt.Errorf("attach tcx link: %w", syscall.ERANGE) }
func (fullStamper) Detach(int) error { return errors.New("not attached") }
func (fullStamper) AddSession(uint32, uint16, collector.Want, func(*collector.ProbeEvent)) error {
	return errors.New("not attached")
}
func (fullStamper) RemoveSession(uint32) error  { return nil }
func (fullStamper) Flush(context.Context) error { return nil }

// A kernel that refuses eBPF for one session is not a fault under --ebpf
// auto: the session measures with socket timestamps and says why. Under
// --ebpf on it is an error.
func TestEBPFLimitFallsBack(t *testing.T) {
	_, addr := startAgent(t, ServerConfig{})
	for _, require := range []bool{false, true} {
		// A session that fails leaves its connection unusable: one each.
		dial := func() *Client {
			c, err := Dial(context.Background(), addr, ClientConfig{Stamper: fullStamper{}, RequireStamper: require})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { c.Close() })
			return c
		}
		echo, echoErr := dial().Echo(context.Background(), EchoParams{Count: 20, Size: 64, Interval: time.Millisecond}, EchoOptions{Wait: time.Second})
		capa, capErr := dial().Capacity(context.Background(), CapacityConfig{Quick: true, Source: estimator.AutoSource})
		if require {
			if echoErr == nil || capErr == nil || !errors.Is(echoErr, syscall.ERANGE) || !errors.Is(capErr, syscall.ERANGE) {
				t.Fatalf("--ebpf on: echo %v, capacity %v; want both to fail with ERANGE", echoErr, capErr)
			}
			continue
		}
		if echoErr != nil || capErr != nil {
			t.Fatalf("--ebpf auto: echo %v, capacity %v; want both to fall back", echoErr, capErr)
		}
		for what, w := range map[string][]string{"echo": echo.Warnings, "capacity": capa.Warnings} {
			if len(w) != 1 || !strings.Contains(w[0], "socket timestamps") || !strings.Contains(w[0], "numerical result out of range") {
				t.Fatalf("%s warnings %q: want one that says it fell back, and why", what, w)
			}
		}
		if echo.ClientSources[0] == "ebpf" || len(echo.Records) != 20 || echo.Records[0].Replies != 1 {
			t.Fatalf("echo: sources %v, %d records", echo.ClientSources, len(echo.Records))
		}
		if len(capa.Trains) == 0 {
			t.Fatal("capacity: no trains")
		}
	}
}
