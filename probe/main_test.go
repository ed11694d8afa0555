package probe

import (
	"os"
	"testing"

	"github.com/probe-dev/probe/collector"
)

// TestMain lets the test binary be the shim of held commands (run sessions
// start their commands held, see collector.StartHeld).
func TestMain(m *testing.M) {
	collector.RunIfHeld()
	runVanishingClient()
	os.Exit(m.Run())
}
