package collector

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"golang.org/x/sys/unix"
)

func TestLoadErrorMessages(t *testing.T) {
	cases := []struct {
		name string
		err  error
		want string
	}{
		{"not root", fmt.Errorf("map create: %w", unix.EPERM), "load probe objects: permission denied: run as root (needs CAP_BPF, CAP_NET_ADMIN)"},
		{"old kernel", fmt.Errorf("map create: %w", ebpf.ErrNotSupported), "load probe objects: needs Linux 5.8 or later (BPF ring buffer): "},
		{"other", unix.ENOMEM, "load probe objects: cannot allocate memory"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := loadError("load probe objects", probeNeeds, c.err)
			if !strings.HasPrefix(err.Error(), c.want) {
				t.Errorf("message %q, want it to start with %q", err, c.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("message %q is not one line", err)
			}
			if !errors.Is(err, c.err) {
				t.Errorf("%v does not wrap %v", err, c.err)
			}
		})
	}
}

// A real verifier rejection keeps its log in the message (printed with %+v).
func TestLoadErrorVerifier(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (CAP_BPF) to run the verifier")
	}
	_, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Type:         ebpf.SchedCLS,
		License:      "GPL",
		Instructions: asm.Instructions{asm.Return()}, // R0 never set
	})
	var ve *ebpf.VerifierError
	if !errors.As(err, &ve) {
		t.Fatalf("want a verifier error, got %v", err)
	}
	msg := loadError("load probe objects", probeNeeds, err).Error()
	if !strings.Contains(msg, "verifier rejected the program") || !strings.Contains(msg, "R0 !read_ok") {
		t.Errorf("message lacks the verifier log:\n%s", msg)
	}
}
