package monitor

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/probe-dev/probe/probe"
)

// A test between two agents runs `probe measure --json` on its from agent,
// in a run session (the agent needs --allow-run and a key), against its to
// agent; the figures come from the JSON document (docs/json.md).

// agentProbe is the binary the from agent runs: its own, whatever its path.
const agentProbe = "/proc/self/exe"

// measureStart is added to the default timeout of a test between agents: the
// measure process starts, loads its eBPF programs and dials.
const measureStart = 15 * time.Second

// measureFrom runs one test of type t with p from the agent src to the agent
// dst and returns its characteristics' values, or ctx's error as soon as it
// ends (the command is stopped then).
func measureFrom(ctx context.Context, dial Dialer, src, dst *Agent, t TestType, p Params) (map[string]float64, error) {
	args, err := measureArgs(dst.Address, src.PeerKeyFile, t, p)
	if err != nil {
		return nil, err
	}
	cl, err := dial(ctx, src.Address, src.Key)
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	rp, err := cl.Run(ctx, probe.RunParams{Path: agentProbe, Args: args, Name: "probe measure"})
	if err != nil {
		return nil, err
	}
	type result struct {
		r   *probe.RunResult
		err error
	}
	done := make(chan result, 1)
	go func() {
		r, err := rp.Wait()
		done <- result{r, err}
	}()
	var res result
	select {
	case res = <-done:
	case <-ctx.Done():
		rp.Stop()
		return nil, ctx.Err()
	}
	if res.err != nil {
		return nil, res.err
	}
	v, err := measureJSON(t, p, res.r.Stdout)
	if err != nil && res.r.ExitCode != 0 {
		return nil, fmt.Errorf("probe measure on %s exited with %d: %s", src.Name, res.r.ExitCode, lastLine(res.r.Stderr))
	}
	return v, err
}

// measureArgs is the command line of probe measure for a test to addr.
func measureArgs(addr, keyFile string, t TestType, p Params) ([]string, error) {
	if strings.HasPrefix(addr, "-") {
		return nil, fmt.Errorf("agent address %q starts with '-'", addr)
	}
	args := []string{"measure", "-h", addr, "--mode", t.String(), "--json"}
	if keyFile != "" {
		args = append(args, "--key-file", keyFile)
	}
	switch t {
	case TypeEcho:
		args = append(args, "-n", strconv.Itoa(p.Count), "-l", strconv.Itoa(p.Size), "-i", p.Interval.String(), "--wait", p.Wait.String())
	case TypeCapacity:
		if !p.Full {
			args = append(args, "--quick")
		}
	case TypeTCP, TypeQUIC:
		args = append(args, "-P", strconv.Itoa(p.Streams), "-t", p.Duration.String())
	default:
		return nil, fmt.Errorf("a %s test does not run between agents", t)
	}
	if p.Reverse && t != TypeEcho {
		args = append(args, "-R")
	}
	return args, nil
}

// measureJSON reads the characteristics of t from probe measure's document,
// as measure computes them from the client's results.
func measureJSON(t TestType, p Params, doc []byte) (map[string]float64, error) {
	if len(bytes.TrimSpace(doc)) == 0 {
		return nil, errors.New("probe measure printed nothing")
	}
	var schema struct {
		Schema string `json:"schema"`
	}
	if err := json.Unmarshal(doc, &schema); err != nil {
		return nil, fmt.Errorf("probe measure's JSON: %w", err)
	}
	if want := "probe/" + t.String() + "/1"; schema.Schema != want {
		return nil, fmt.Errorf("probe measure's JSON has schema %q, want %q", schema.Schema, want)
	}
	switch t {
	case TypeEcho:
		return echoJSON(doc)
	case TypeCapacity:
		var d struct {
			Result struct {
				Estimate  float64  `json:"estimate_bps"`
				Sustained *float64 `json:"sustained_bps"`
			} `json:"result"`
		}
		if err := json.Unmarshal(doc, &d); err != nil {
			return nil, fmt.Errorf("probe measure's JSON: %w", err)
		}
		out := map[string]float64{"capacity": d.Result.Estimate, "sustained": 0}
		if d.Result.Sustained != nil {
			out["sustained"] = *d.Result.Sustained
		}
		return out, nil
	case TypeTCP, TypeQUIC:
		type side struct {
			Retransmits  float64 `json:"retransmits"`
			Loss         float64 `json:"loss_ratio"`
			StreamErrors int     `json:"stream_errors"`
		}
		var d struct {
			End struct {
				Received float64 `json:"received_bps"`
				Client   side    `json:"client"`
				Agent    *side   `json:"agent"`
			} `json:"end"`
		}
		if err := json.Unmarshal(doc, &d); err != nil {
			return nil, fmt.Errorf("probe measure's JSON: %w", err)
		}
		send := d.End.Client
		if p.Reverse {
			if d.End.Agent == nil {
				return nil, errors.New("probe measure's JSON has no agent side")
			}
			send = *d.End.Agent
		}
		if d.End.Received == 0 && send.StreamErrors > 0 {
			return nil, fmt.Errorf("%d of %d streams failed and nothing arrived", send.StreamErrors, p.Streams)
		}
		if t == TypeTCP {
			return map[string]float64{"throughput": d.End.Received, "retransmits": send.Retransmits}, nil
		}
		return map[string]float64{"throughput": d.End.Received, "loss": send.Loss}, nil
	}
	return nil, fmt.Errorf("a %s test does not run between agents", t)
}

func echoJSON(doc []byte) (map[string]float64, error) {
	type rtt struct {
		Min    float64 `json:"min_us"`
		Median float64 `json:"median_us"`
	}
	var d struct {
		Measurements []struct {
			Sent      int  `json:"sent"`
			Received  int  `json:"received"`
			Lost      int  `json:"lost"`
			RTT       *rtt `json:"rtt"`
			UserRTT   *rtt `json:"user_rtt"`
			RoundTrip *struct {
				Jitter float64 `json:"jitter_us"`
			} `json:"round_trip"`
			Error *string `json:"error"`
		} `json:"measurements"`
	}
	if err := json.Unmarshal(doc, &d); err != nil {
		return nil, fmt.Errorf("probe measure's JSON: %w", err)
	}
	if len(d.Measurements) != 1 {
		return nil, fmt.Errorf("probe measure's JSON has %d measurements, want 1", len(d.Measurements))
	}
	m := d.Measurements[0]
	out := map[string]float64{}
	if m.Sent > 0 {
		out["loss"] = float64(m.Lost) / float64(m.Sent)
	}
	r := m.RTT
	if r == nil {
		r = m.UserRTT // no kernel stamps on both ends: user space is still a figure
	}
	if r != nil {
		out["rtt"], out["rtt_min"] = r.Median/1e6, r.Min/1e6
		if m.RoundTrip != nil {
			out["jitter"] = m.RoundTrip.Jitter / 1e6
		}
	}
	if m.Error != nil && m.Received > 0 {
		return out, errors.New(*m.Error)
	}
	// Everything lost is a measurement: loss 1, no RTT.
	return out, nil
}

// lastLine is the last non-empty line of b, or a note that there is none.
func lastLine(b []byte) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if l := strings.TrimSpace(lines[len(lines)-1]); l != "" {
		return l
	}
	return "nothing on stderr"
}
