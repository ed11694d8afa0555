package testbed

import (
	"os"
	"os/exec"
	"testing"
)

// Netem agrees with tc: both try a netem qdisc on the loopback of a fresh
// namespace, tc through `unshare -n`.
func TestNetemAgreesWithTC(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to make a network namespace")
	}
	if _, err := exec.LookPath("tc"); err != nil {
		t.Skip("tc (iproute2) not installed: nothing to compare with")
	}
	out, tcErr := exec.Command("unshare", "-n", "tc", "qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms").CombinedOutput()
	err := Netem()
	t.Logf("tc: %v %s; Netem: %v", tcErr, out, err)
	if (tcErr == nil) != (err == nil) {
		t.Fatalf("tc says %v (%s), Netem says %v", tcErr, out, err)
	}
}
