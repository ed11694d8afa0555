package main

import (
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/probe-dev/probe/bench/internal/harness"
)

// childEnv holds the CPU the echoing child pins itself to, -1 for none.
const childEnv = "PROBE_BENCH_SCHED_CHILD"

// pingPong is our equivalent of perf's benchmark: both ends block in
// read(2) on locked OS threads, so that each round trip is a sleep and a
// wake-up of each side; Go's poller would add switches of its own. cpu ≥ 0
// pins both ends to it, so that every round trip is two context switches
// between them.
func pingPong(loops, cpu int) (time.Duration, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if err := pin(cpu); err != nil {
		return 0, err
	}
	// Blocking pipes (os.Pipe would hand them to Go's poller).
	var toChild, toParent [2]int
	if err := unix.Pipe2(toChild[:], unix.O_CLOEXEC); err != nil {
		return 0, err
	}
	if err := unix.Pipe2(toParent[:], unix.O_CLOEXEC); err != nil {
		unix.Close(toChild[0])
		unix.Close(toChild[1])
		return 0, err
	}
	defer unix.Close(toParent[0])
	self, _ := os.Executable()
	cmd := exec.Command(self)
	cmd.Env = append(os.Environ(), childEnv+"="+strconv.Itoa(cpu))
	// The child's ends are closed through their os.File: a raw close would
	// leave the File's finalizer to close whatever reuses the number.
	in, out := os.NewFile(uintptr(toChild[0]), "in"), os.NewFile(uintptr(toParent[1]), "out")
	cmd.ExtraFiles = []*os.File{in, out}
	cmd.Stderr = os.Stderr
	err := cmd.Start()
	in.Close()
	out.Close()
	if err != nil {
		unix.Close(toChild[1])
		return 0, err
	}
	b := []byte{1}
	// The first round trip waits for the child's start.
	err = trip(toChild[1], toParent[0], b)
	start := time.Now()
	for i := 0; i < loops && err == nil; i++ {
		err = trip(toChild[1], toParent[0], b)
	}
	d := time.Since(start)
	unix.Close(toChild[1])
	cmd.Wait()
	return d, err
}

func trip(out, in int, b []byte) error {
	if _, err := unix.Write(out, b); err != nil {
		return err
	}
	_, err := unix.Read(in, b)
	return err
}

func pin(cpu int) error {
	var set unix.CPUSet
	if cpu < 0 {
		for i := range runtime.NumCPU() {
			set.Set(i)
		}
	} else {
		set.Set(cpu)
	}
	return unix.SchedSetaffinity(0, &set)
}

// echo is the child: it returns every byte until the parent hangs up.
func echo(cpu int) {
	runtime.LockOSThread()
	if err := pin(cpu); err != nil {
		harness.Fail(err.Error())
	}
	b := make([]byte, 1)
	for {
		if n, err := unix.Read(3, b); err != nil || n == 0 {
			return
		}
		if _, err := unix.Write(4, b); err != nil {
			return
		}
	}
}

func splitLines(s string) []string {
	var lines []string
	for _, l := range strings.Split(s, "\n") {
		lines = append(lines, strings.TrimSpace(l))
	}
	return lines
}
