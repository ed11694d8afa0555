package main

import (
	"os"
	"time"

	"github.com/probe-dev/probe/cmd/internal/report"
	"github.com/probe-dev/probe/probe"
)

// startOf is the opening of a measurement's JSON document: this binary,
// its command line, the time, and both hosts as they describe themselves.
// cl is nil against a perf server, which says nothing of itself.
func startOf(cl *probe.Client, ebpf bool) report.Start {
	version, commit := buildInfo()
	s := report.Start{Tool: "probe", Version: version, Commit: commit, CommandLine: os.Args,
		Time: time.Now().UTC().Format(time.RFC3339Nano)}
	if cl != nil {
		s.Client = report.HostOf(cl.LocalAddr().String(), probe.LocalHost(ebpf))
		s.Agent = report.HostOf(cl.AgentAddr().String(), cl.AgentHost())
	} else {
		s.Client = report.HostOf("", probe.LocalHost(false))
	}
	return s
}
