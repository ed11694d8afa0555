package report

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/probe-dev/probe/collector/dump"
	"github.com/probe-dev/probe/estimator"
)

// Who sends, as the first line of every report says it.
const (
	AgentToClient = "agent → client"
	ClientToAgent = "client → agent"
)

// Both ways at once, for tcp and quic --bidir.
const BothWays = "client ⇄ agent"

// pathOf says who sends in a stream test of direction dir (forward,
// reverse, bidir).
func pathOf(dir string) string {
	switch dir {
	case "reverse":
		return AgentToClient
	case "bidir":
		return BothWays
	}
	return ClientToAgent
}

// CapacityInfo says what was measured.
type CapacityInfo struct {
	From, To    string        `json:"-"`
	Path        string        `json:"path"` // AgentToClient or ClientToAgent
	Size        int           `json:"size"` // full-size packets, IP bytes
	Quick       bool          `json:"quick"`
	Duration    time.Duration `json:"-"`
	Interrupted bool          `json:"interrupted,omitempty"`
}

// Meta stores info in a dump header.
func (i CapacityInfo) Meta() map[string]string {
	return map[string]string{
		"from": i.From, "to": i.To, "path": i.Path, "size": strconv.Itoa(i.Size),
		"quick": strconv.FormatBool(i.Quick), "duration": i.Duration.String(),
	}
}

// CapacityInfoFromMeta reads what Meta stored.
func CapacityInfoFromMeta(m map[string]string) CapacityInfo {
	i := CapacityInfo{From: m["from"], To: m["to"], Path: m["path"]}
	i.Size, _ = strconv.Atoi(m["size"])
	i.Quick, _ = strconv.ParseBool(m["quick"])
	i.Duration, _ = time.ParseDuration(m["duration"])
	return i
}

func mbit(bps float64) float64 { return bps / 1e6 }

// CapacityText prints a capacity estimate for people.
func CapacityText(w io.Writer, i CapacityInfo, c estimator.Capacity) {
	fmt.Fprintf(w, "capacity %s (%s → %s), at the IP layer (IP and UDP headers counted), %d-byte packets\n",
		i.Path, i.From, i.To, i.Size)
	bounds := fmt.Sprintf("[%.2f, %.2f]", mbit(c.Lower), mbit(c.Upper))
	if c.Upper == 0 {
		bounds = fmt.Sprintf("[%.2f, unknown]", mbit(c.Lower))
	}
	fmt.Fprintf(w, "  estimate      %8.2f Mbit/s  %s  verdict: %s\n", mbit(c.Estimate), bounds, c.Verdict)
	switch {
	case c.SenderLimited:
		fmt.Fprintf(w, "  note          capacity ≥ %.2f Mbit/s, this sender's back-to-back rate: the path is faster than it sends\n", mbit(c.Estimate))
	case c.Verdict == estimator.VerdictLowerBound && i.Quick:
		fmt.Fprintln(w, "  note          lower bound: no short-train mode reached the sustained rate; a full run adds Phase I (40 sizes) to find one")
	case c.Upper > 0 && c.Verdict != estimator.VerdictShaper:
		fmt.Fprintln(w, "  interval      95 % for the samples' centre, widened to the sustained rate when it is near (docs/capacity.md)")
	}
	if c.Sustained > 0 {
		fmt.Fprintf(w, "  sustained     %8.2f Mbit/s  (long trains, tail rate)\n", mbit(c.Sustained))
	}
	if c.Peak > 0 {
		fmt.Fprintf(w, "  peak          %8.2f Mbit/s  (short trains: a shaper's burst passes at this rate)\n", mbit(c.Peak))
	}
	fmt.Fprintf(w, "  preliminary   %8.2f ± %.2f Mbit/s, bin width %.3f Mbit/s\n", mbit(c.PrelimMean), mbit(c.PrelimStd), mbit(c.BinWidth))
	if len(c.Modes) > 0 {
		parts := make([]string, len(c.Modes))
		for k, m := range c.Modes {
			parts[k] = fmt.Sprintf("%.2f (%d samples, merit %.2f)", mbit(m.Value), m.Count, m.Merit)
			if k == c.Chosen {
				parts[k] += " chosen"
			}
		}
		fmt.Fprintf(w, "  modes         %s\n", strings.Join(parts, "; "))
	}
	if c.Overhead > 0 {
		fmt.Fprintf(w, "  link overhead %8.1f B per packet, fitted over packet sizes\n", c.Overhead)
	}
	fmt.Fprintf(w, "  timestamps    %s at the receiver; noise floor %s, min dispersion %s", c.Source, dur(c.NoiseFloor), dur(c.MinDispersion))
	if c.KernelToUser > 0 {
		fmt.Fprintf(w, ", kernel-to-user %s", dur(c.KernelToUser))
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "  trains        %d used (%d samples)%s in %.1f s\n", c.Trains, c.Samples, discarded(c.Discarded), i.Duration.Seconds())
	if i.Interrupted {
		fmt.Fprintln(w, "  note          interrupted: estimated from the trains measured until then")
	}
}

func dur(d time.Duration) string { return fmt.Sprintf("%.1fµs", float64(d)/1e3) }

func discarded(m map[string]int) string {
	if len(m) == 0 {
		return ""
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for k, key := range keys {
		parts[k] = fmt.Sprintf("%d %s", m[key], key)
	}
	return ", discarded " + strings.Join(parts, ", ")
}

type modeJSON struct {
	Value, Low, High float64
	Count            int
	Kurtosis, Merit  float64
}

// CapacityJSON prints a capacity estimate as one JSON object, rates in Mbit/s.
func CapacityJSON(w io.Writer, i CapacityInfo, c estimator.Capacity) error {
	modes := make([]modeJSON, len(c.Modes))
	for k, m := range c.Modes {
		modes[k] = modeJSON{mbit(m.Value), mbit(m.Low), mbit(m.High), m.Count, m.Kurtosis, m.Merit}
	}
	out := struct {
		CapacityInfo
		From         string         `json:"from"`
		To           string         `json:"to"`
		DurationS    float64        `json:"duration_s"`
		Unit         string         `json:"unit"`
		Estimate     float64        `json:"estimate"`
		Lower        float64        `json:"lower"`
		Upper        float64        `json:"upper"`
		Sustained    float64        `json:"sustained"`
		Peak         float64        `json:"peak"`
		BinWidth     float64        `json:"bin_width"`
		Verdict      string         `json:"verdict"`
		SenderLimit  bool           `json:"sender_limited,omitempty"`
		PrelimMean   float64        `json:"prelim_mean"`
		PrelimStd    float64        `json:"prelim_std"`
		Modes        []modeJSON     `json:"modes"`
		Chosen       int            `json:"chosen"`
		Overhead     float64        `json:"link_overhead_bytes"`
		Source       string         `json:"ts_source"`
		NoiseFloor   float64        `json:"noise_floor_us"`
		MinDisp      float64        `json:"min_dispersion_us"`
		KernelToUser float64        `json:"kernel_to_user_us"`
		Trains       int            `json:"trains"`
		Samples      int            `json:"samples"`
		Discarded    map[string]int `json:"discarded"`
	}{
		i, i.From, i.To, i.Duration.Seconds(), "Mbit/s at the IP layer",
		mbit(c.Estimate), mbit(c.Lower), mbit(c.Upper), mbit(c.Sustained), mbit(c.Peak), mbit(c.BinWidth),
		c.Verdict.String(), c.SenderLimited, mbit(c.PrelimMean), mbit(c.PrelimStd), modes, c.Chosen, c.Overhead, c.Source.String(),
		usf(c.NoiseFloor), usf(c.MinDispersion), usf(c.KernelToUser), c.Trains, c.Samples, c.Discarded,
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}

func usf(d time.Duration) float64 { return float64(d) / 1e3 }

// FormatTokens lists the -f tokens: loco's, and probe's own.
const FormatTokens = `%be estimate, %bl lower bound, %bu upper bound, %bw bin width, %bs sustained rate,
%bp peak rate, %pm/%ps preliminary mean/std (all Mbit/s at the IP layer); %am verdict number,
%AM verdict text; %pd minimum dispersion, %ul kernel-to-user latency, %nf noise floor (µs);
%ts timestamp source; %lo link overhead (B); %du duration (s); %nt trains used; %%; \n \t`

// formatTokens maps each -f token to its value.
var formatTokens = map[string]func(CapacityInfo, estimator.Capacity) string{
	"be": func(_ CapacityInfo, c estimator.Capacity) string { return f2(mbit(c.Estimate)) },
	"bl": func(_ CapacityInfo, c estimator.Capacity) string { return f2(mbit(c.Lower)) },
	"bu": func(_ CapacityInfo, c estimator.Capacity) string { return f2(mbit(c.Upper)) },
	"bw": func(_ CapacityInfo, c estimator.Capacity) string { return f2(mbit(c.BinWidth)) },
	"bs": func(_ CapacityInfo, c estimator.Capacity) string { return f2(mbit(c.Sustained)) },
	"bp": func(_ CapacityInfo, c estimator.Capacity) string { return f2(mbit(c.Peak)) },
	"pm": func(_ CapacityInfo, c estimator.Capacity) string { return f2(mbit(c.PrelimMean)) },
	"ps": func(_ CapacityInfo, c estimator.Capacity) string { return f2(mbit(c.PrelimStd)) },
	"am": func(_ CapacityInfo, c estimator.Capacity) string { return strconv.Itoa(int(c.Verdict)) },
	"AM": func(_ CapacityInfo, c estimator.Capacity) string { return c.Verdict.String() },
	"pd": func(_ CapacityInfo, c estimator.Capacity) string { return f2(usf(c.MinDispersion)) },
	"ul": func(_ CapacityInfo, c estimator.Capacity) string { return f2(usf(c.KernelToUser)) },
	"nf": func(_ CapacityInfo, c estimator.Capacity) string { return f2(usf(c.NoiseFloor)) },
	"ts": func(_ CapacityInfo, c estimator.Capacity) string { return c.Source.String() },
	"lo": func(_ CapacityInfo, c estimator.Capacity) string { return f2(c.Overhead) },
	"du": func(i CapacityInfo, _ estimator.Capacity) string { return f2(i.Duration.Seconds()) },
	"nt": func(_ CapacityInfo, c estimator.Capacity) string { return strconv.Itoa(c.Trains) },
}

func f2(v float64) string { return strconv.FormatFloat(v, 'f', 2, 64) }

// CapacityFormat prints c through a loco-style format string.
func CapacityFormat(w io.Writer, format string, i CapacityInfo, c estimator.Capacity) error {
	var b strings.Builder
	for k := 0; k < len(format); k++ {
		ch := format[k]
		switch {
		case ch == '\\' && k+1 < len(format) && (format[k+1] == 'n' || format[k+1] == 't'):
			b.WriteByte(map[byte]byte{'n': '\n', 't': '\t'}[format[k+1]])
			k++
		case ch != '%':
			b.WriteByte(ch)
		case k+1 < len(format) && format[k+1] == '%':
			b.WriteByte('%')
			k++
		case k+2 >= len(format):
			return fmt.Errorf("format %q: %q at the end is not a token; known: %s", format, format[k:], strings.ReplaceAll(FormatTokens, "\n", " "))
		default:
			tok := format[k+1 : k+3]
			value, ok := formatTokens[tok]
			if !ok {
				return fmt.Errorf("format %q: unknown token %%%s; known: %s", format, tok, strings.ReplaceAll(FormatTokens, "\n", " "))
			}
			b.WriteString(value(i, c))
			k += 2
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// Capacity prints est as the flags ask: through format, as JSON, or as text;
// and draws the histogram to plotPath when given.
func Capacity(w io.Writer, format string, asJSON bool, plotPath string, i CapacityInfo, est estimator.Capacity) error {
	if plotPath != "" {
		if err := PlotCapacity(plotPath, i, est); err != nil {
			return err
		}
	}
	switch {
	case format != "":
		return CapacityFormat(w, format, i, est)
	case asJSON:
		return CapacityJSON(w, i, est)
	}
	CapacityText(w, i, est)
	return nil
}

// EstimateCapacity runs the estimator as both commands do (bin width in
// Mbit/s, 0 for automatic) and turns "no estimate" into an error, so that
// they exit 0 only with an estimate.
func EstimateCapacity(trains []dump.Train, src dump.Source, binWidth float64) (estimator.Capacity, error) {
	if binWidth < 0 {
		return estimator.Capacity{}, fmt.Errorf("bin width %g Mbit/s: want a positive width, or 0 for automatic", binWidth)
	}
	est, err := estimator.EstimateCapacity(trains, estimator.CapacityOptions{Source: src, BinWidth: binWidth * 1e6})
	if err == nil && est.Verdict == estimator.VerdictNone {
		err = fmt.Errorf("no estimate from %d trains: the run ended before its preliminary trains gave one", len(trains))
	}
	return est, err
}
