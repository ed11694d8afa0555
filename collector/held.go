package collector

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"syscall"
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
// until the starter writes one byte (or exits: then the command never runs).
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
	return syscall.Exec(args[1], args[2:], os.Environ())
}

// StartHeld starts cmd through the running binary's shim (see HeldArg): the
// process exists, with its pid, process group, namespace, files and
// environment, but does not run cmd's program until release is called, so
// that a watcher can start accounting for it before its first instruction.
// start starts the rewritten cmd (nil: cmd.Start), e.g. inside a network
// namespace. Call release once: release(true) lets the command run,
// release(false) makes the shim exit with status 127 without running it.
func StartHeld(cmd *exec.Cmd, start func(*exec.Cmd) error) (release func(run bool) error, err error) {
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
	fd := 3 + len(cmd.ExtraFiles)
	argv := cmd.Args
	if len(argv) == 0 {
		argv = []string{cmd.Path}
	}
	cmd.Args = append([]string{self, HeldArg, strconv.Itoa(fd), cmd.Path}, argv...)
	cmd.Path = self
	cmd.ExtraFiles = append(cmd.ExtraFiles, r)
	if start == nil {
		start = (*exec.Cmd).Start
	}
	err = start(cmd)
	r.Close()
	cmd.ExtraFiles = cmd.ExtraFiles[:len(cmd.ExtraFiles)-1]
	if err != nil {
		w.Close()
		return nil, err
	}
	return func(run bool) error {
		defer w.Close()
		if !run {
			return nil
		}
		if _, err := w.Write([]byte{1}); err != nil {
			return fmt.Errorf("release held command: %w", err)
		}
		return nil
	}, nil
}
