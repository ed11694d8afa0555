package main

import (
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"

	"github.com/probe-dev/probe/testbed"
	"github.com/urfave/cli/v2"
	"golang.org/x/sys/unix"
)

// stampedCommit is the fallback when the toolchain did not stamp the
// commit (GOFLAGS=-buildvcs=false): make build sets it with -ldflags -X.
var stampedCommit string

// buildInfo is the module version and the commit this binary was built
// from, as the Go toolchain stamped them.
func buildInfo() (version, commit string) {
	version, commit = "devel", "unknown"
	if stampedCommit != "" {
		commit = stampedCommit
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return
	}
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		version = v
	}
	var dirty bool
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			commit = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if dirty {
		commit += " (modified)"
	}
	return
}

// kernelRelease is uname -r, and its major and minor numbers.
func kernelRelease() (string, int, int) {
	var u unix.Utsname
	if unix.Uname(&u) != nil {
		return "unknown", 0, 0
	}
	rel := unix.ByteSliceToString(u.Release[:])
	parts := strings.SplitN(rel, ".", 3)
	major, _ := strconv.Atoi(parts[0])
	minor := 0
	if len(parts) > 1 {
		minor, _ = strconv.Atoi(strings.TrimFunc(parts[1], func(r rune) bool { return r < '0' || r > '9' }))
	}
	return rel, major, minor
}

// printVersion says what this binary is and what the kernel under it
// offers the measurements: BTF for the eBPF programs, TCX to attach them
// (else a clsact qdisc), netem for the testbed's delay and loss.
func printVersion(w io.Writer) {
	version, commit := buildInfo()
	rel, major, minor := kernelRelease()
	fmt.Fprintf(w, "probe %s\ncommit %s\n%s %s/%s\n", version, commit, runtime.Version(), runtime.GOOS, runtime.GOARCH)
	fmt.Fprintf(w, "kernel %s\n", rel)
	btf := "yes"
	if _, err := os.Stat("/sys/kernel/btf/vmlinux"); err != nil {
		btf = "no (/sys/kernel/btf/vmlinux missing): no eBPF timestamps or scheduler accounting"
	}
	fmt.Fprintf(w, "  BTF    %s\n", btf)
	tcx := "yes"
	if major < 6 || major == 6 && minor < 6 {
		tcx = "no (needs 6.6): eBPF attaches under a clsact qdisc"
	}
	fmt.Fprintf(w, "  TCX    %s\n", tcx)
	netem := "yes"
	switch {
	case os.Geteuid() != 0:
		netem = "unknown (checking needs root)"
	default:
		if err := testbed.Netem(); err != nil {
			netem = "no: " + err.Error()
		}
	}
	fmt.Fprintf(w, "  netem  %s\n", netem)
}

func init() {
	cli.VersionFlag = &cli.BoolFlag{Name: "version", Aliases: []string{"V"}, Usage: "print the version, the commit and what this kernel offers"}
	cli.VersionPrinter = func(c *cli.Context) { printVersion(c.App.Writer) }
}
