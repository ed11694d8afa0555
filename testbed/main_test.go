package testbed

import (
	"os"
	"testing"

	"github.com/probe-dev/probe/collector"
)

// TestMain lets the test binary be the shim of held commands: the runner
// starts every scenario process held (collector.StartHeld).
func TestMain(m *testing.M) {
	collector.RunIfHeld()
	os.Exit(m.Run())
}
