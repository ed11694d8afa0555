package testbed

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

func TestMain(m *testing.M) {
	runShadowCheck()
	os.Exit(m.Run())
}

// A namespace the testbed made can still be deleted after iproute2 has
// set /run/netns up its own way (vm/up.sh's `ip netns add` did, while a
// scenario ran, and hid the scenario's namespaces for good). The check runs
// in a mount namespace of its own, from a /run/netns that is no mount point.
func TestNamespaceSurvivesIPNetnsAdd(t *testing.T) {
	needRoot(t)
	for _, tool := range []string{"unshare", "ip"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("skipping: needs %s (util-linux, iproute2): %v", tool, err)
		}
	}
	name := uniqueName("shadow")
	cmd := exec.Command("unshare", "--mount", "--propagation", "private", os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), shadowEnv+"="+name)
	out, err := cmd.CombinedOutput()
	// The mounts were the child's own; files it could not remove are left
	// here as plain ones.
	for _, f := range []string{name, name + "-ip"} {
		os.Remove(filepath.Join(netnsDir, nsPrefix+f))
	}
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
}

// shadowEnv makes the test binary run the check of
// TestNamespaceSurvivesIPNetnsAdd, in the mount namespace it was started in,
// with namespaces named after its value.
const shadowEnv = "PROBE_TEST_NETNS_SHADOW"

func runShadowCheck() {
	name := os.Getenv(shadowEnv)
	if name == "" {
		return
	}
	if err := shadowCheck(nsPrefix + name); err != nil {
		fmt.Println(err)
		os.Exit(1)
	}
	os.Exit(0)
}

func shadowCheck(ours string) error {
	// Start as a fresh host does: /run/netns a plain folder.
	if err := unix.Unmount(netnsDir, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("unmount %s in the test's mount namespace: %w", netnsDir, err)
	}
	theirs := ours + "-ip"
	if _, err := createNamespaces([]string{ours}, func(string) error { return nil }); err != nil {
		return err
	}
	if out, err := exec.Command("ip", "netns", "add", theirs).CombinedOutput(); err != nil {
		deleteNamespace(ours)
		return fmt.Errorf("ip netns add: %v: %s", err, out)
	}
	defer exec.Command("ip", "netns", "delete", theirs).Run()
	return deleteNamespace(ours)
}
