// Package report prints results for people (text) and programs (JSON); the
// probe and estimate commands share it so that both print the same report.
package report

import (
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/probe-dev/probe/collector/dump"
	"github.com/probe-dev/probe/estimator"
)

// EchoInfo says what was measured.
type EchoInfo struct {
	Agent    string        `json:"agent"`
	Count    int           `json:"count"`
	Size     int           `json:"size"` // UDP payload bytes
	Interval time.Duration `json:"interval_ns"`
}

// EchoText prints an echo summary for people.
func EchoText(w io.Writer, info EchoInfo, s estimator.EchoSummary) {
	fmt.Fprintf(w, "echo to %s: %d probes of %d B UDP payload every %v\n", info.Agent, info.Count, info.Size, info.Interval)
	fmt.Fprintf(w, "sent %d  received %d  lost %d (%.1f %%)  duplicates %d\n",
		s.Sent, s.Received, s.Lost(), 100*float64(s.Lost())/float64(max(s.Sent, 1)), s.Duplicates)
	fmt.Fprintf(w, "RTT  %-6s min %-9s median %-9s max %-9s mean %-9s stddev %-9s n=%d  (kernel timestamps, agent turnaround subtracted)\n",
		s.Kernel.Source(), us(s.Kernel.Min), us(s.Kernel.Median), us(s.Kernel.Max), us(s.Kernel.Mean), us(s.Kernel.Stddev), s.Kernel.N)
	if s.User.N > 0 {
		fmt.Fprintf(w, "RTT  %-6s min %-9s median %-9s max %-9s mean %-9s stddev %-9s n=%d  (user space, turnaround included)\n",
			"user", us(s.User.Min), us(s.User.Median), us(s.User.Max), us(s.User.Mean), us(s.User.Stddev), s.User.N)
	}
	if s.Unstamped > 0 {
		fmt.Fprintf(w, "note: %d replies lacked %s timestamps and are left out of the kernel RTT\n", s.Unstamped, s.Kernel.Source())
	}
}

func us(d time.Duration) string { return fmt.Sprintf("%.1fµs", float64(d)/1e3) }

type rttJSON struct {
	Source   string  `json:"source"`
	N        int     `json:"n"`
	MinUs    float64 `json:"min_us"`
	MedianUs float64 `json:"median_us"`
	MeanUs   float64 `json:"mean_us"`
	MaxUs    float64 `json:"max_us"`
	StddevUs float64 `json:"stddev_us"`
}

func rttOf(r estimator.RTT) rttJSON {
	f := func(d time.Duration) float64 { return float64(d) / 1e3 }
	return rttJSON{r.Source(), r.N, f(r.Min), f(r.Median), f(r.Mean), f(r.Max), f(r.Stddev)}
}

// EchoJSON prints an echo summary as one JSON object.
func EchoJSON(w io.Writer, info EchoInfo, s estimator.EchoSummary) error {
	out := struct {
		EchoInfo
		Sent       int     `json:"sent"`
		Received   int     `json:"received"`
		Lost       int     `json:"lost"`
		Duplicates int     `json:"duplicates"`
		Unstamped  int     `json:"unstamped"`
		RTT        rttJSON `json:"rtt"`
		UserRTT    rttJSON `json:"user_rtt"`
	}{info, s.Sent, s.Received, s.Lost(), s.Duplicates, s.Unstamped, rttOf(s.Kernel), rttOf(s.User)}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}

// Meta stores info in a dump header.
func (i EchoInfo) Meta() map[string]string {
	return map[string]string{
		"agent": i.Agent, "count": fmt.Sprint(i.Count), "size": fmt.Sprint(i.Size), "interval": i.Interval.String(),
	}
}

// EchoInfoFromMeta reads what Meta stored; missing fields stay zero.
func EchoInfoFromMeta(m map[string]string) EchoInfo {
	i := EchoInfo{Agent: m["agent"]}
	fmt.Sscan(m["count"], &i.Count)
	fmt.Sscan(m["size"], &i.Size)
	i.Interval, _ = time.ParseDuration(m["interval"])
	return i
}

// Echo computes the summary of recs with timestamps of src and prints it.
func Echo(w io.Writer, info EchoInfo, recs []dump.EchoRecord, src dump.Source, asJSON bool) error {
	s, err := estimator.Echo(recs, src)
	if err != nil {
		return err
	}
	if asJSON {
		return EchoJSON(w, info, s)
	}
	EchoText(w, info, s)
	return nil
}

// ParseTSSource reads a --ts-source value: auto or a source name.
func ParseTSSource(s string) (dump.Source, error) {
	if s == "auto" {
		return estimator.AutoSource, nil
	}
	return dump.ParseSource(s)
}
