package collector

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"golang.org/x/sys/unix"
)

// needs says what an eBPF object requires of the host, for error messages.
type needs struct {
	caps   string // capabilities besides root, e.g. "CAP_BPF, CAP_NET_ADMIN"
	kernel string // oldest kernel with every feature used, e.g. "5.8"
	what   string // the feature that sets that version
	btf    bool   // needs the kernel's own BTF
}

// describedError keeps err in the chain (errors.Is/As still work) while
// Error reads as one sentence saying what the host lacks.
type describedError struct {
	msg string
	err error
}

func (e *describedError) Error() string { return e.msg }
func (e *describedError) Unwrap() error { return e.err }

// loadError explains a failure to load or attach: doing names the step,
// e.g. "load probe objects".
func loadError(doing string, n needs, err error) error {
	var ve *ebpf.VerifierError
	switch {
	case errors.As(err, &ve):
		// %+v prints the whole verifier log, which is what one needs to fix it.
		return &describedError{fmt.Sprintf("%s: verifier rejected the program: %+v", doing, ve), err}
	case errors.Is(err, unix.EPERM), errors.Is(err, unix.EACCES):
		// The library's own text (map create: operation not permitted, with
		// a memlock hint that is wrong on current kernels) adds nothing.
		return &describedError{fmt.Sprintf("%s: permission denied: run as root (needs %s)", doing, n.caps), err}
	case n.btf && errors.Is(err, ebpf.ErrNotSupported) && !haveKernelBTF():
		return &describedError{fmt.Sprintf("%s: needs kernel BTF (CONFIG_DEBUG_INFO_BTF=y, /sys/kernel/btf/vmlinux): %v", doing, err), err}
	case errors.Is(err, ebpf.ErrNotSupported):
		return &describedError{fmt.Sprintf("%s: needs Linux %s or later (%s): %v", doing, n.kernel, n.what, err), err}
	case errors.Is(err, unix.ERANGE):
		// The kernel holds at most 64 TCX programs per hook and interface:
		// one per probe process, so many processes on one host fill it.
		return &describedError{fmt.Sprintf("%s: the interface's %s chain is full (%v): too many eBPF programs on it, e.g. one per probe process", doing, n.what, err), err}
	}
	return fmt.Errorf("%s: %w", doing, err)
}

func haveKernelBTF() bool {
	_, err := btf.LoadKernelSpec()
	return err == nil
}
