package probe

import (
	"os"
	"testing"

	"github.com/probe-dev/probe/collector"
)

// TestMain lets the test binary be the shim of held commands (run sessions
// start their commands held, see collector.StartHeld), a vanishing client
// or a CPU hog.
func TestMain(m *testing.M) {
	collector.RunIfHeld()
	runVanishingClient()
	runHog()
	os.Exit(m.Run())
}
