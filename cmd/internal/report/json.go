package report

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"time"

	"github.com/probe-dev/probe/probe"
)

// Every JSON document names its schema, "probe/<mode>/<version>". The
// version grows when a key changes meaning or goes away, not when one is
// added; docs/json.md documents every key, and a test holds the documents
// to it.
const (
	SchemaCapacity = "probe/capacity/1"
	SchemaEcho     = "probe/echo/1"
	SchemaTCP      = "probe/tcp/1"
	SchemaQUIC     = "probe/quic/1"
	SchemaTCPQUIC  = "probe/tcp+quic/1"
)

// Start opens every measurement's document, as iperf3's "start" does: what
// ran, when, and on which hosts.
type Start struct {
	Tool        string   `json:"tool"` // "probe"
	Version     string   `json:"version"`
	Commit      string   `json:"commit"`
	CommandLine []string `json:"command_line"`
	Time        string   `json:"time"` // RFC 3339, when the measurement began
	Client      *Host    `json:"client"`
	// Agent is null when nothing is known of it beyond its address
	// (Host.Addr): a perf server, or an agent older than this field.
	Agent *Host `json:"agent"`
}

// Host is one end of a measurement.
type Host struct {
	Addr             string   `json:"addr"`
	Name             string   `json:"name"`
	Kernel           string   `json:"kernel"`
	TimestampSources []string `json:"timestamp_sources"` // best first: ebpf, sw, user
}

// HostOf turns what a host says of itself into a report's Host; nil when
// it said nothing.
func HostOf(addr string, h probe.HostInfo) *Host {
	if h.Name == "" && h.Kernel == "" && len(h.Sources) == 0 {
		return nil
	}
	return &Host{Addr: addr, Name: h.Name, Kernel: h.Kernel, TimestampSources: nonNil(h.Sources)}
}

// writeDoc prints one indented document, without HTML escaping: "→"
// and "<" stay as they are.
func writeDoc(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// writeDocLine prints one document on one line, for --json-stream.
func writeDocLine(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

// seconds and micros put a duration in a key's unit.
func seconds(d time.Duration) float64 { return d.Seconds() }
func micros(d time.Duration) float64  { return float64(d) / 1e3 }

// orNull is v, or null when ok is false: a figure not measured is not 0.
func orNull(v float64, ok bool) *float64 {
	if !ok {
		return nil
	}
	return &v
}

// nonNil makes an empty list [] rather than null.
func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// startMeta keeps a Start in a dump header, so that estimate -r prints the
// measurement's own.
func startMeta(s Start) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// startFromMeta reads what startMeta kept; a dump older than it gives what
// its header has.
func startFromMeta(m map[string]string) Start {
	var s Start
	if json.Unmarshal([]byte(m["start"]), &s) != nil {
		s = Start{Tool: "probe", Version: "unknown", Commit: "unknown"}
	}
	s.CommandLine = nonNil(s.CommandLine)
	return s
}

// pathFromMeta reads a path as dumps older than the arrows wrote it.
func pathFromMeta(p string) string {
	switch p {
	case "agent -> client":
		return AgentToClient
	case "client -> agent":
		return ClientToAgent
	}
	return p
}

// Rate prints a network rate in bit/s units: 950 kbit/s, 19.12 Mbit/s,
// 44.29 Gbit/s.
func Rate(bps float64) string {
	switch a := math.Abs(bps); {
	case a >= 1e9:
		return fmt.Sprintf("%.2f Gbit/s", bps/1e9)
	case a >= 1e6:
		return fmt.Sprintf("%.2f Mbit/s", bps/1e6)
	case a >= 1e3:
		return fmt.Sprintf("%.1f kbit/s", bps/1e3)
	}
	return fmt.Sprintf("%.0f bit/s", bps)
}

// rateOr is Rate, or "-" for a rate not measured.
func rateOr(bps float64) string {
	if bps <= 0 {
		return "-"
	}
	return Rate(bps)
}
