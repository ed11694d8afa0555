package collector

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"time"
)

// HeldArg, as the first argument of a binary, makes it the shim of StartHeld:
// the process waits until it is released, then becomes the held command
// (same pid). Every binary that starts held commands calls RunIfHeld first
// in main, and its tests in TestMain.
const HeldArg = "__held"

// RunIfHeld returns at once unless this process was started as StartHeld's
// shim; then it waits to be released and execs the held command, and never
// returns.
func RunIfHeld() {
	if len(os.Args) < 2 || os.Args[1] != HeldArg {
		return
	}
	err := runHeld(os.Args[2:])
	fmt.Fprintf(os.Stderr, "held command: %v\n", err)
	os.Exit(127) // the shell's "command not found"
}

// runHeld is the shim: FD PATH ARGV0 ARGS...; it blocks on a read of FD
// until the starter writes one byte (or exits: then the command never
// runs). It writes its CPU time so far to FD+1, which the exec closes:
// that tells the starter that the command runs.
func runHeld(args []string) error {
	if len(args) < 3 {
		return errors.New("want FD PATH ARGV0 [ARGS...]")
	}
	fd, err := strconv.Atoi(args[0])
	if err != nil || fd < 3 {
		return fmt.Errorf("bad release descriptor %q", args[0])
	}
	f := os.NewFile(uintptr(fd), "release")
	var b [1]byte
	if _, err := f.Read(b[:]); err != nil {
		return fmt.Errorf("wait for the watcher: %w", err)
	}
	f.Close()
	// The shim's CPU time, which the process's own accounting keeps
	// after the exec, for the starter to leave out.
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err == nil {
		var b [16]byte
		binary.LittleEndian.PutUint64(b[:], uint64(ru.Utime.Nano()))
		binary.LittleEndian.PutUint64(b[8:], uint64(ru.Stime.Nano()))
		syscall.Write(fd+1, b[:]) // no *os.File, whose finalizer might close it early
	}
	syscall.CloseOnExec(fd + 1)
	return syscall.Exec(args[1], args[2:], os.Environ())
}

// Shim is what the shim of a held command cost before the command ran.
type Shim struct {
	User, System time.Duration // 0 when the shim could not say
}

// StartHeld starts cmd through the running binary's shim (see HeldArg): the
// process exists, with its pid, process group, namespace, files and
// environment, but does not run cmd's program until release is called, so
// that a watcher can start accounting for it before its first instruction.
// start starts the rewritten cmd (nil: cmd.Start), e.g. inside a network
// namespace. Call release once: release(true, atExec) lets the command run
// and returns once it does (its exec is done, or the shim ended), so that
// what a watcher samples next is the command's and not the shim's, with the
// CPU time the shim used, which the process's rusage and /proc keep
// counting; atExec, if not nil, is called as the shim has measured that
// and goes to exec, for the watcher's own figures of the same instant.
// release(false, nil) makes the shim exit with status 127 without running
// it.
func StartHeld(cmd *exec.Cmd, start func(*exec.Cmd) error) (release func(run bool, atExec func()) (Shim, error), err error) {
	if cmd.Err != nil {
		return nil, cmd.Err
	}
	if cmd.Process != nil {
		return nil, errors.New("start held: already started")
	}
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("start held: find own binary: %w", err)
	}
	r, w, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("start held: %w", err)
	}
	execR, execW, err := os.Pipe()
	if err != nil {
		r.Close()
		w.Close()
		return nil, fmt.Errorf("start held: %w", err)
	}
	fd := 3 + len(cmd.ExtraFiles)
	argv := cmd.Args
	if len(argv) == 0 {
		argv = []string{cmd.Path}
	}
	cmd.Args = append([]string{self, HeldArg, strconv.Itoa(fd), cmd.Path}, argv...)
	cmd.Path = self
	cmd.ExtraFiles = append(cmd.ExtraFiles, r, execW)
	if start == nil {
		start = (*exec.Cmd).Start
	}
	err = start(cmd)
	r.Close()
	execW.Close()
	cmd.ExtraFiles = cmd.ExtraFiles[:len(cmd.ExtraFiles)-2]
	if err != nil {
		w.Close()
		execR.Close()
		return nil, err
	}
	return func(run bool, atExec func()) (Shim, error) {
		defer execR.Close()
		defer w.Close()
		if !run {
			return Shim{}, nil
		}
		if _, err := w.Write([]byte{1}); err != nil {
			return Shim{}, fmt.Errorf("release held command: %w", err)
		}
		var b [16]byte
		var sh Shim
		if _, err := io.ReadFull(execR, b[:]); err == nil {
			sh.User = time.Duration(binary.LittleEndian.Uint64(b[:]))
			sh.System = time.Duration(binary.LittleEndian.Uint64(b[8:]))
		}
		if atExec != nil {
			atExec()
		}
		// EOF once the exec closed the shim's end (or the shim exited).
		io.Copy(io.Discard, execR)
		return sh, nil
	}, nil
}
