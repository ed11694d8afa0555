package collector

import (
	"errors"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// With the interface's TCX chain full, as some 64 probe processes on one
// host make it, Attach fails with an error that says so and wraps ERANGE,
// which clients take as "no eBPF for this session", not as a fault.
func TestAttachTCXChainFull(t *testing.T) {
	ts := newKernelTimestamper(t)
	// A program may sit once per hook: load one per attachment.
	spec := &ebpf.ProgramSpec{Type: ebpf.SchedCLS, License: "GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, -1), asm.Return()}} // TCX_NEXT
	inPrivateNetns(t, func() {
		var links []link.Link
		defer func() {
			for _, l := range links {
				l.Close()
			}
		}()
		for len(links) < 1000 {
			next, err := ebpf.NewProgram(spec)
			if err != nil {
				t.Fatal(err)
			}
			l, err := link.AttachTCX(link.TCXOptions{Interface: 1, Program: next, Attach: ebpf.AttachTCXIngress})
			next.Close() // the link holds it
			if err != nil {
				if !errors.Is(err, unix.ERANGE) || len(links) == 0 {
					t.Fatalf("after %d programs: %v", len(links), err)
				}
				break
			}
			links = append(links, l)
		}
		err := ts.Attach(1)
		if err == nil {
			ts.Detach(1)
			t.Fatalf("attached beside %d programs", len(links))
		}
		if !errors.Is(err, unix.ERANGE) || !strings.Contains(err.Error(), "chain is full") {
			t.Fatalf("with %d programs on lo: %v; want ERANGE, said", len(links), err)
		}
		t.Logf("%d programs on lo ingress; then: %v", len(links), err)
	})
}
