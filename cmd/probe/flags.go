package main

import (
	"fmt"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/probe-dev/probe/probe"
	"github.com/urfave/cli/v2"
)

// measureMode is a set of what probe measure measures; each of its flags
// applies to some of them.
type measureMode uint8

const (
	modeEcho measureMode = 1 << iota
	modeCapacity
	modeTCP
	modeQUIC

	modeAll = modeEcho | modeCapacity | modeTCP | modeQUIC
	// modeStream are the modes that move a stream of bytes.
	modeStream = modeTCP | modeQUIC
)

var modeNames = []struct {
	m    measureMode
	name probe.Mode
}{{modeEcho, probe.ModeEcho}, {modeCapacity, probe.ModeCapacity}, {modeTCP, probe.ModeTCP}, {modeQUIC, probe.ModeQUIC}}

// parseMode reads --mode: one mode, or tcp,quic.
func parseMode(s string) (measureMode, error) {
	var m measureMode
	for _, part := range strings.Split(s, ",") {
		found := false
		for _, n := range modeNames {
			if probe.Mode(part) == n.name {
				m |= n.m
				found = true
			}
		}
		if !found {
			return 0, fmt.Errorf("--mode %q: want echo, capacity, tcp, quic or tcp,quic", s)
		}
	}
	if m != modeTCP|modeQUIC && m&(m-1) != 0 {
		return 0, fmt.Errorf("--mode %q: only tcp and quic run together", s)
	}
	return m, nil
}

func (m measureMode) String() string {
	var parts []string
	for _, n := range modeNames {
		if m&n.m != 0 {
			parts = append(parts, string(n.name))
		}
	}
	return strings.Join(parts, ", ")
}

// measureFlagModes says which modes each flag of probe measure applies to.
// A flag given to a mode it does not apply to is an error, not ignored, and
// the help groups the flags by these sets.
var measureFlagModes = map[string]measureMode{
	"host": modeAll, "mode": modeAll, "json": modeAll, "key-file": modeAll, "ebpf": modeAll,
	"plot": modeAll, "json-stream": modeEcho | modeStream,

	"ts-source": modeEcho | modeCapacity, "write": modeEcho | modeCapacity, "pcap": modeEcho | modeCapacity,

	"count": modeEcho, "duration": modeEcho, "size": modeEcho, "size-to": modeEcho, "size-step": modeEcho,
	"interval": modeEcho, "interval-to": modeEcho, "interval-step": modeEcho, "measurements": modeEcho,
	"wait": modeEcho, "rcvbuf": modeEcho, "sndbuf": modeEcho, "dscp": modeEcho, "no-gso": modeEcho,
	"ttl": modeEcho, "udp-port": modeEcho, "csv": modeEcho,

	"reverse": modeCapacity | modeStream,

	"quick": modeCapacity, "all-phases": modeCapacity, "budget": modeCapacity, "ip-size": modeCapacity,
	"max-train": modeCapacity, "bin-width": modeCapacity, "format": modeCapacity,

	"parallel": modeStream, "bidir": modeStream, "time": modeStream, "bytes": modeStream,
	"write-size": modeStream, "sample": modeStream, "report": modeStream, "exclusive": modeStream,
	"sockopt": modeTCP, "getsockopt": modeTCP, "tcp-info": modeTCP,

	// The agent's certificate is the control connection's in every mode,
	// and QUIC's.
	"pin": modeAll, "ca": modeAll, "insecure": modeAll,
	"perf-server": modeQUIC,
	"pings":       modeQUIC, "ping-interval": modeQUIC,
}

// categoryOf names a set of modes in the help; flags of every mode come
// first, uncategorised.
func categoryOf(m measureMode) string {
	if m == modeAll {
		return ""
	}
	return m.String()
}

// categorise puts every flag in the help category of its modes. The flag
// types of urfave/cli share no setter for it, hence reflection.
func categorise(flags []cli.Flag, table map[string]measureMode) []cli.Flag {
	for _, f := range flags {
		m, ok := table[f.Names()[0]]
		if !ok {
			panic("flag --" + f.Names()[0] + " is missing from the table of modes")
		}
		reflect.ValueOf(f).Elem().FieldByName("Category").SetString(categoryOf(m))
	}
	return flags
}

// checkFlags refuses, in one line, a flag that was given but does nothing
// in mode.
func checkFlags(c *cli.Context, table map[string]measureMode, mode measureMode) error {
	names := make([]string, 0, len(table))
	for name := range table {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if table[name]&mode == 0 && c.IsSet(name) {
			return fmt.Errorf("%s does not apply to --mode %s (it is for %s)", spelled(c, name), modeFlag(mode), table[name])
		}
	}
	return nil
}

func modeFlag(m measureMode) string { return strings.ReplaceAll(m.String(), ", ", ",") }

var usageErr = regexp.MustCompile(`invalid value "([^"]*)" for flag -+([^:]+):`)

// usageError turns a flag parsing error into one line with a hint,
// instead of the whole help.
func usageError(c *cli.Context, err error, _ bool) error {
	name := c.Command.FullName()
	if name == "" {
		name = c.App.Name
	} else {
		name = c.App.Name + " " + name
	}
	msg := err.Error()
	if m := usageErr.FindStringSubmatch(msg); m != nil {
		msg = fmt.Sprintf("invalid value %q for %s", m[1], dashes(m[2]))
		if _, isNum := strconv.ParseFloat(m[1], 64); isNum == nil && isDuration(c, m[2]) {
			msg += fmt.Sprintf(": a duration wants a unit, did you mean %ss?", m[1])
		}
	}
	return fmt.Errorf("%s (see %s --help)", msg, name)
}

// dashes writes a flag name as it is typed: -t, --time.
func dashes(name string) string {
	if len(name) == 1 {
		return "-" + name
	}
	return "--" + name
}

// spelled is a flag with its short alias: -P/--parallel.
func spelled(c *cli.Context, name string) string {
	if f := findFlag(c, name); f != nil {
		var out []string
		for _, n := range f.Names()[1:] {
			out = append(out, dashes(n))
		}
		return strings.Join(append(out, dashes(name)), "/")
	}
	return dashes(name)
}

func findFlag(c *cli.Context, name string) cli.Flag {
	flags := c.App.Flags
	if c.Command != nil && c.Command.Name != "" {
		flags = c.Command.Flags
	}
	for _, f := range flags {
		for _, n := range f.Names() {
			if n == name {
				return f
			}
		}
	}
	return nil
}

func isDuration(c *cli.Context, name string) bool {
	_, ok := findFlag(c, name).(*cli.DurationFlag)
	return ok
}

// withUsageErrors gives every command, at every depth, the one-line usage
// errors.
func withUsageErrors(cmds []*cli.Command) {
	for _, c := range cmds {
		c.OnUsageError = usageError
		withUsageErrors(c.Subcommands)
	}
}
