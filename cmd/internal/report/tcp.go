package report

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/probe-dev/probe/collector"
	"github.com/probe-dev/probe/estimator"
	"github.com/probe-dev/probe/probe"
	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
)

// TCPOptions say how to print a TCP test.
type TCPOptions struct {
	Agent  string
	Every  time.Duration // report interval
	Fields []collector.SelectedField
	JSON   bool
	Plot   string // file, .png or .svg
}

// sender is the side whose byte counts and TCP_INFO tell the rate: the one
// that writes (the client for forward tests; both for bidir, the client's).
func sender(r *probe.TCPResult) (name string, side probe.TCPSide) {
	if r.Params.Direction == "reverse" {
		return "agent", r.Agent
	}
	return "client", r.Client
}

// TCP prints a TCP test.
func TCP(w io.Writer, r *probe.TCPResult, o TCPOptions) error {
	if o.Plot != "" {
		if err := PlotTCP(o.Plot, r, o); err != nil {
			return err
		}
	}
	if o.JSON {
		return tcpJSON(w, r, o)
	}
	p := r.Params
	what := fmt.Sprintf("%v", p.Duration)
	if p.Bytes > 0 {
		what = fmt.Sprintf("%d bytes", p.Bytes)
	}
	fmt.Fprintf(w, "tcp %s (agent %s): %d streams, %s, writes of %d B", pathOf(p.Direction), o.Agent, p.Streams, what, p.WriteSize)
	if len(p.SockOpts) > 0 {
		fmt.Fprintf(w, ", %s", strings.Join(p.SockOpts, " "))
	}
	fmt.Fprintln(w)
	for _, s := range []struct {
		name string
		side probe.TCPSide
	}{{"client", r.Client}, {"agent", r.Agent}} {
		if len(s.side.ReadBack) > 0 {
			fmt.Fprintf(w, "read back on the %s: %v\n", s.name, s.side.ReadBack)
		}
	}
	name, side := sender(r)
	fmt.Fprintf(w, "intervals from the %s's counters and TCP_INFO (mean over streams):\n", name)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	// Each stream gets a column too, while they fit on a line.
	perStream := len(side.Streams) > 1 && len(side.Streams) <= 8
	head := "time s\tMbit/s\tretrans\trtt µs\tcwnd\t"
	if perStream {
		for i := range side.Streams {
			head += fmt.Sprintf("#%d Mbit/s\t", i)
		}
	}
	for _, f := range o.Fields {
		head += strings.TrimRight(f.Label, ":= ") + "\t"
	}
	fmt.Fprintln(tw, head)
	for _, iv := range estimator.TCPIntervals(side.Streams, o.Every) {
		line := fmt.Sprintf("%.1f-%.1f\t%.2f\t%d\t%.0f\t%.1f\t", iv.Start.Seconds(), iv.End.Seconds(), iv.Rate/1e6, iv.Retrans,
			float64(iv.RTT)/1e3, iv.Cwnd)
		if perStream {
			for _, r := range iv.PerStream {
				line += fmt.Sprintf("%.2f\t", r/1e6)
			}
		}
		for _, f := range o.Fields {
			line += fmt.Sprintf("%.1f\t", meanField(iv, f.Field))
		}
		fmt.Fprintln(tw, line)
	}
	tw.Flush()
	for _, s := range []struct {
		name string
		side probe.TCPSide
	}{{"client", r.Client}, {"agent", r.Agent}} {
		t := estimator.TCPTotal(s.side.Streams, s.side.Elapsed)
		fmt.Fprintf(w, "%-6s sent %d B (%.2f Mbit/s), received %d B (%.2f Mbit/s) in %.2f s; retransmits %d; %s user %.2f s, system %.2f s",
			s.name, t.Sent, t.SendRate/1e6, t.Received, t.RecvRate/1e6, s.side.Elapsed.Seconds(), t.Retrans,
			cpuLabel(s.name, s.side.CPUSessions), s.side.UserCPU.Seconds(), s.side.SysCPU.Seconds())
		if t.Errors > 0 {
			fmt.Fprintf(w, "; %d streams ended in an error, e.g. %s", t.Errors, firstErr(s.side))
		}
		fmt.Fprintln(w)
	}
	return nil
}

func firstErr(s probe.TCPSide) string {
	for _, st := range s.Streams {
		if st.Err != "" {
			return st.Err
		}
	}
	return ""
}

func meanField(iv estimator.TCPInterval, f collector.TCPInfoField) float64 {
	if len(iv.Samples) == 0 {
		return 0
	}
	var sum float64
	for k := range iv.Samples {
		sum += f.Value(&iv.Samples[k])
	}
	return sum / float64(len(iv.Samples))
}

func tcpJSON(w io.Writer, r *probe.TCPResult, o TCPOptions) error {
	type sideJSON struct {
		probe.TCPSide
		Totals estimator.TCPTotals `json:"totals"`
	}
	_, snd := sender(r)
	ivs := estimator.TCPIntervals(snd.Streams, o.Every)
	for i := range ivs {
		ivs[i].Samples = nil // every sample is in the sides
	}
	out := struct {
		Agent     string                  `json:"agent"`
		Params    probe.TCPParams         `json:"params"`
		Started   time.Time               `json:"started"`
		Intervals []estimator.TCPInterval `json:"intervals"`
		Client    sideJSON                `json:"client"`
		AgentSide sideJSON                `json:"agent_side"`
	}{o.Agent, r.Params, r.Started, ivs,
		sideJSON{r.Client, estimator.TCPTotal(r.Client.Streams, r.Client.Elapsed)},
		sideJSON{r.Agent, estimator.TCPTotal(r.Agent.Streams, r.Agent.Elapsed)}}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}

// PlotTCP draws three panels over time: the summed rate, the mean cwnd and
// the mean RTT, from the sending side.
func PlotTCP(path string, r *probe.TCPResult, o TCPOptions) error {
	_, side := sender(r)
	ivs := estimator.TCPIntervals(side.Streams, r.Params.Interval)
	panels := []struct {
		title string
		y     func(estimator.TCPInterval) float64
	}{
		{"rate, Mbit/s", func(iv estimator.TCPInterval) float64 { return iv.Rate / 1e6 }},
		{"cwnd, segments (mean)", func(iv estimator.TCPInterval) float64 { return iv.Cwnd }},
		{"RTT, µs (mean)", func(iv estimator.TCPInterval) float64 { return float64(iv.RTT) / 1e3 }},
	}
	plots := make([]*plot.Plot, len(panels))
	for i, pn := range panels {
		pts := make(plotter.XYs, len(ivs))
		for k, iv := range ivs {
			pts[k] = plotter.XY{X: iv.End.Seconds(), Y: pn.y(iv)}
		}
		p := plot.New()
		p.Y.Label.Text = pn.title
		p.X.Label.Text = "time, s"
		if i == 0 {
			p.Title.Text = fmt.Sprintf("tcp %s (agent %s): %d streams", pathOf(r.Params.Direction), o.Agent, r.Params.Streams)
		}
		l, err := plotter.NewLine(pts)
		if err != nil {
			return fmt.Errorf("plot %s: %w", path, err)
		}
		p.Add(l)
		plots[i] = p
	}
	return saveStacked(path, plots)
}

// cpuLabel names whose CPU a side's figures are: getrusage's of the whole
// process, which is the test's own only when it ran alone there.
func cpuLabel(side string, sessions int) string {
	if sessions > 1 {
		return fmt.Sprintf("CPU of the whole %s process, shared by the %d tests it ran at once,", side, sessions)
	}
	return "CPU"
}
