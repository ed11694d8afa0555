package scenario

import (
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/probe-dev/probe/collector"
	"github.com/probe-dev/probe/testbed"
)

// TestMain lets the test binary be the shim of held commands: the runner
// starts every scenario process held (collector.StartHeld).
func TestMain(m *testing.M) {
	collector.RunIfHeld()
	os.Exit(m.Run())
}

func needRoot(t *testing.T) {
	t.Helper()
	if err := testbed.CheckPrivileges(); err != nil {
		t.Skipf("skipping: the scenario builds network namespaces, veths and qdiscs: %v", err)
	}
}

// uniqueTest names a scenario so that its star's namespaces do not meet those
// of the same test run by another process at the same time.
func uniqueTest(kind string) string {
	return fmt.Sprintf("%s%d", kind, os.Getpid())
}

// noLeftovers fails when a testbed of the scenario test is still up.
func noLeftovers(t *testing.T, test string) {
	t.Helper()
	sts, err := testbed.List()
	if err != nil {
		t.Fatal(err)
	}
	for _, st := range sts {
		// A star's namespaces are probe-<name>-<host>, hosts not a, b or r.
		if n := starName(test); st.Name == n || strings.HasPrefix(st.Name, n+"-") {
			t.Errorf("testbed %s left behind: %+v", st.Name, st)
		}
	}
}
