package report

import (
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/probe-dev/probe/collector/dump"
	"github.com/probe-dev/probe/estimator"
	"github.com/probe-dev/probe/probe"
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
func pathOf(dir probe.Direction) string {
	switch dir {
	case probe.DirReverse:
		return AgentToClient
	case probe.DirBidir:
		return BothWays
	}
	return ClientToAgent
}

// CapacityInfo says what was measured.
type CapacityInfo struct {
	Start       Start
	From, To    string
	Path        string // AgentToClient or ClientToAgent
	Size        int    // full-size packets, IP bytes
	Quick       bool
	Duration    time.Duration
	Interrupted bool
}

// Meta stores info in a dump header.
func (i CapacityInfo) Meta() map[string]string {
	return map[string]string{
		"from": i.From, "to": i.To, "path": i.Path, "size": strconv.Itoa(i.Size),
		"quick": strconv.FormatBool(i.Quick), "duration": i.Duration.String(), "start": startMeta(i.Start),
	}
}

// CapacityInfoFromMeta reads what Meta stored.
func CapacityInfoFromMeta(m map[string]string) CapacityInfo {
	i := CapacityInfo{From: m["from"], To: m["to"], Path: pathFromMeta(m["path"]), Start: startFromMeta(m)}
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

// CapacityDoc is the JSON document of a capacity measurement.
type CapacityDoc struct {
	Schema string             `json:"schema"`
	Start  Start              `json:"start"`
	Params CapacityParamsJSON `json:"params"`
	Result CapacityResultJSON `json:"result"`
}

// CapacityParamsJSON is what was asked.
type CapacityParamsJSON struct {
	Path        string `json:"path"` // AgentToClient or ClientToAgent
	From        string `json:"from"`
	To          string `json:"to"`
	IPSizeBytes int    `json:"ip_size_bytes"`
	Quick       bool   `json:"quick"`
}

// CapacityResultJSON is the estimate; rates are bit/s at the IP layer, and
// a figure the run could not give is null.
type CapacityResultJSON struct {
	EstimateBps       float64        `json:"estimate_bps"`
	LowerBps          float64        `json:"lower_bps"`
	UpperBps          *float64       `json:"upper_bps"`
	SustainedBps      *float64       `json:"sustained_bps"`
	PeakBps           *float64       `json:"peak_bps"`
	Verdict           string         `json:"verdict"`
	VerdictCode       int            `json:"verdict_code"`
	SenderLimited     bool           `json:"sender_limited"`
	BinWidthBps       float64        `json:"bin_width_bps"`
	PrelimMeanBps     float64        `json:"prelim_mean_bps"`
	PrelimStdBps      float64        `json:"prelim_std_bps"`
	Modes             []ModeJSON     `json:"modes"`
	LinkOverheadBytes *float64       `json:"link_overhead_bytes"`
	TSSource          string         `json:"ts_source"`
	NoiseFloorUs      float64        `json:"noise_floor_us"`
	MinDispersionUs   float64        `json:"min_dispersion_us"`
	KernelToUserUs    *float64       `json:"kernel_to_user_us"`
	Trains            int            `json:"trains"`
	Samples           int            `json:"samples"`
	Discarded         map[string]int `json:"discarded"`
	DurationS         float64        `json:"duration_s"`
	Interrupted       bool           `json:"interrupted"`
}

// ModeJSON is one mode of the dispersion histogram.
type ModeJSON struct {
	ValueBps float64 `json:"value_bps"`
	LowBps   float64 `json:"low_bps"`
	HighBps  float64 `json:"high_bps"`
	Samples  int     `json:"samples"`
	Kurtosis float64 `json:"kurtosis"`
	Merit    float64 `json:"merit"`
	Chosen   bool    `json:"chosen"`
}

// CapacityDocument builds the JSON document of an estimate.
func CapacityDocument(i CapacityInfo, c estimator.Capacity) CapacityDoc {
	modes := make([]ModeJSON, len(c.Modes))
	for k, m := range c.Modes {
		modes[k] = ModeJSON{m.Value, m.Low, m.High, m.Count, m.Kurtosis, m.Merit, k == c.Chosen}
	}
	disc := map[string]int{}
	for k, v := range c.Discarded {
		disc[k] = v
	}
	return CapacityDoc{
		Schema: SchemaCapacity,
		Start:  i.Start,
		Params: CapacityParamsJSON{Path: i.Path, From: i.From, To: i.To, IPSizeBytes: i.Size, Quick: i.Quick},
		Result: CapacityResultJSON{
			EstimateBps: c.Estimate, LowerBps: c.Lower, UpperBps: orNull(c.Upper, c.Upper > 0),
			SustainedBps: orNull(c.Sustained, c.Sustained > 0), PeakBps: orNull(c.Peak, c.Peak > 0),
			Verdict: c.Verdict.String(), VerdictCode: int(c.Verdict), SenderLimited: c.SenderLimited, BinWidthBps: c.BinWidth,
			PrelimMeanBps: c.PrelimMean, PrelimStdBps: c.PrelimStd, Modes: modes,
			LinkOverheadBytes: orNull(c.Overhead, c.Overhead != 0), TSSource: c.Source.String(),
			NoiseFloorUs: micros(c.NoiseFloor), MinDispersionUs: micros(c.MinDispersion),
			KernelToUserUs: orNull(micros(c.KernelToUser), c.KernelToUser > 0),
			Trains:         c.Trains, Samples: c.Samples, Discarded: disc,
			DurationS: seconds(i.Duration), Interrupted: i.Interrupted,
		},
	}
}

// CapacityJSON prints a capacity estimate as one JSON document.
func CapacityJSON(w io.Writer, i CapacityInfo, c estimator.Capacity) error {
	return writeDoc(w, CapacityDocument(i, c))
}

func usf(d time.Duration) float64 { return float64(d) / 1e3 }

// FormatTokens lists the -f tokens: loco's, and probe's own.
const FormatTokens = `%be estimate, %bl lower bound, %bu upper bound, %bw bin width, %bs sustained rate,
%bp peak rate ("-" where not measured), %pm/%ps preliminary mean/std (all Mbit/s at the IP layer); %am verdict number,
%AM verdict text; %pd minimum dispersion, %ul kernel-to-user latency, %nf noise floor (µs);
%ts timestamp source; %lo link overhead (B); %du duration (s); %nt trains used; %%; \n \t`

// formatTokens maps each -f token to its value.
var formatTokens = map[string]func(CapacityInfo, estimator.Capacity) string{
	"be": func(_ CapacityInfo, c estimator.Capacity) string { return f2(mbit(c.Estimate)) },
	"bl": func(_ CapacityInfo, c estimator.Capacity) string { return f2(mbit(c.Lower)) },
	"bu": func(_ CapacityInfo, c estimator.Capacity) string { return f2or(mbit(c.Upper), c.Upper > 0) },
	"bw": func(_ CapacityInfo, c estimator.Capacity) string { return f2(mbit(c.BinWidth)) },
	"bs": func(_ CapacityInfo, c estimator.Capacity) string { return f2or(mbit(c.Sustained), c.Sustained > 0) },
	"bp": func(_ CapacityInfo, c estimator.Capacity) string { return f2or(mbit(c.Peak), c.Peak > 0) },
	"pm": func(_ CapacityInfo, c estimator.Capacity) string { return f2(mbit(c.PrelimMean)) },
	"ps": func(_ CapacityInfo, c estimator.Capacity) string { return f2(mbit(c.PrelimStd)) },
	"am": func(_ CapacityInfo, c estimator.Capacity) string { return strconv.Itoa(int(c.Verdict)) },
	"AM": func(_ CapacityInfo, c estimator.Capacity) string { return c.Verdict.String() },
	"pd": func(_ CapacityInfo, c estimator.Capacity) string { return f2(usf(c.MinDispersion)) },
	"ul": func(_ CapacityInfo, c estimator.Capacity) string {
		return f2or(usf(c.KernelToUser), c.KernelToUser > 0)
	},
	"nf": func(_ CapacityInfo, c estimator.Capacity) string { return f2(usf(c.NoiseFloor)) },
	"ts": func(_ CapacityInfo, c estimator.Capacity) string { return c.Source.String() },
	"lo": func(_ CapacityInfo, c estimator.Capacity) string { return f2or(c.Overhead, c.Overhead != 0) },
	"du": func(i CapacityInfo, _ estimator.Capacity) string { return f2(i.Duration.Seconds()) },
	"nt": func(_ CapacityInfo, c estimator.Capacity) string { return strconv.Itoa(c.Trains) },
}

func f2(v float64) string { return strconv.FormatFloat(v, 'f', 2, 64) }

// f2or is f2 of a figure the run may not have given: "-" then, not 0.00.
func f2or(v float64, ok bool) string {
	if !ok {
		return "-"
	}
	return f2(v)
}

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
	switch {
	case err != nil || est.Verdict != estimator.VerdictNone:
	case binWidth > 0:
		err = fmt.Errorf("no estimate from %d trains in bins of %g Mbit/s: try a wider --bin-width, or 0 for automatic", len(trains), binWidth)
	default:
		err = fmt.Errorf("no estimate from %d trains: the run ended before its preliminary trains gave one", len(trains))
	}
	return est, err
}
