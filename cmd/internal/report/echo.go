// Package report prints results for people (text) and programs (JSON, CSV);
// the probe and estimate commands share it so that both print the same.
package report

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/probe-dev/probe/collector/dump"
	"github.com/probe-dev/probe/estimator"
)

// EchoInfo says what was measured.
type EchoInfo struct {
	Start    Start
	Agent    string
	Count    int
	Size     int // UDP payload bytes
	Interval time.Duration
}

// Meta stores info in a dump header.
func (i EchoInfo) Meta() map[string]string {
	return map[string]string{
		"agent": i.Agent, "count": fmt.Sprint(i.Count), "size": fmt.Sprint(i.Size), "interval": i.Interval.String(),
		"start": startMeta(i.Start),
	}
}

// EchoInfoFromMeta reads what Meta stored; missing fields stay zero.
func EchoInfoFromMeta(m map[string]string) EchoInfo {
	i := EchoInfo{Agent: m["agent"], Start: startFromMeta(m)}
	fmt.Sscan(m["count"], &i.Count)
	fmt.Sscan(m["size"], &i.Size)
	i.Interval, _ = time.ParseDuration(m["interval"])
	return i
}

// EchoMeasurement is one point of an echo run and its records.
type EchoMeasurement struct {
	Point   dump.EchoPoint
	Records []dump.EchoRecord
}

// echoRow is one measurement's statistics, as printed.
type echoRow struct {
	Point   dump.EchoPoint
	Stats   estimator.EchoSummary
	Err     string // the measurement gave no statistics, e.g. everything lost
	NoRates bool   // the stamps cannot give rates (GSO batches without eBPF stamps per probe)
}

// Echo computes each measurement's statistics with timestamps of src and
// prints them as format says (text, json, csv); with plotDir, it also draws
// the plots there.
func Echo(w io.Writer, info EchoInfo, points []EchoMeasurement, src dump.Source, format, plotDir string) error {
	if len(points) == 0 {
		return errors.New("no echo measurement to report")
	}
	rows := make([]echoRow, len(points))
	ok := 0
	var firstErr error
	for i, p := range points {
		var err error
		rows[i], err = echoRowOf(p, src)
		if err != nil {
			rows[i].Err = err.Error()
			firstErr = cmpErr(firstErr, err)
			continue
		}
		ok++
	}
	if plotDir != "" {
		if err := PlotEcho(plotDir, info, points, rows); err != nil {
			return err
		}
	}
	var err error
	switch format {
	case "json":
		err = echoJSON(w, info, rows)
	case "csv":
		err = echoCSV(w, rows)
	default:
		echoText(w, info, rows)
	}
	if err == nil && ok == 0 {
		// Exit non-zero when nothing could be measured, but only after
		// printing what happened to every probe.
		err = firstErr
	}
	return err
}

// echoRowOf computes one measurement's statistics.
func echoRowOf(p EchoMeasurement, src dump.Source) (echoRow, error) {
	s, err := estimator.EchoStats(p.Point, p.Records, src)
	r := echoRow{Point: p.Point, Stats: s}
	if err != nil {
		r.Err = err.Error()
	}
	if s.RateSource == dump.SourceUser && s.GSO {
		// Kernel stamps mark only each GSO batch's first probe, and user
		// space stamps a batch of sends or replies at once: a rate from
		// those reads many times the path's. None is given.
		r.NoRates = true
		r.Stats.SendRate, r.Stats.SendRateIP, r.Stats.RecvRate, r.Stats.RecvRateIP = 0, 0, 0, 0
	}
	return r, err
}

func cmpErr(first, err error) error {
	if first != nil {
		return first
	}
	return err
}

func us(d time.Duration) string { return fmt.Sprintf("%.1f", float64(d)/1e3) }

// mbitOr is a rate in Mbit/s for a table, or "-" when not measured.
func mbitOr(bps float64) string {
	if bps <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.3f", bps/1e6)
}

// usIf is us(d), or "-" where the figure does not stand.
func usIf(d time.Duration, ok bool) string {
	if !ok {
		return "-"
	}
	return us(d)
}

func echoText(w io.Writer, info EchoInfo, rows []echoRow) {
	if len(rows) == 1 {
		echoPointText(w, info, rows[0])
		return
	}
	fmt.Fprintf(w, "echo client → agent → client (agent %s): %d measurements; RTT in µs from kernel timestamps, agent turnaround subtracted (p99 where n ≥ 100); rates in Mbit/s at the client\n", info.Agent, len(rows))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "size B\twait µs\tsent\tlost there\tlost back\tdup\treord\tcorrupt\tRTT min\tmedian\tp99\tmax\tsrc\tuser med\tjitter there\tback\tsend Mb/s\trecv Mb/s\trecv IP\tµs/frame\t")
	for _, r := range rows {
		s := r.Stats
		if r.Err != "" && s.Received == 0 {
			fmt.Fprintf(tw, "%d\t%s\t%d\t%d\t%d\t\t\t\t%s\t\n", r.Point.Size, us(r.Point.Wait), s.Sent, s.LostThere, s.LostBack, r.Err)
			continue
		}
		fmt.Fprintf(tw, "%d\t%s\t%d\t%d\t%d\t%d\t%d\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n",
			r.Point.Size, us(r.Point.Wait), s.Sent, s.LostThere, s.LostBack, s.Duplicates, s.ReorderRoundTrip.Count,
			s.CorruptedThere+s.CorruptedBack, us(s.Kernel.Min), us(s.Kernel.Median), usIf(s.Kernel.P99, s.Kernel.N >= minN99), us(s.Kernel.Max),
			s.Kernel.Source(), us(s.User.Median), us(s.There.Jitter), us(s.Back.Jitter),
			mbitOr(s.SendRate), mbitOr(s.RecvRate), mbitOr(s.RecvRateIP), us(s.TimePerFrame))
	}
	tw.Flush()
}

func echoPointText(w io.Writer, info EchoInfo, r echoRow) {
	s, p := r.Stats, r.Point
	fmt.Fprintf(w, "echo client → agent → client (agent %s): %d probes of %d B UDP payload every %v\n", info.Agent, p.Count, p.Size, p.Wait)
	fmt.Fprintf(w, "sent %d  received %d  lost %d (%.1f %%): there %d, back %d  duplicates %d  corrupted %d there, %d back\n",
		s.Sent, s.Received, s.Lost(), 100*float64(s.Lost())/float64(max(s.Sent, 1)), s.LostThere, s.LostBack,
		s.Duplicates, s.CorruptedThere, s.CorruptedBack)
	if s.AgentSocketDrops+s.ClientSocketDrops > 0 || s.AgentLimited > 0 {
		limited := ""
		if s.AgentLimited > 0 {
			limited = fmt.Sprintf("; agent's rate limit held back %d", s.AgentLimited)
		}
		fmt.Fprintf(w, "socket buffers overflowed: agent %d, client %d%s (explain %d lost there, %d back)\n",
			s.AgentSocketDrops, s.ClientSocketDrops, limited, s.ExplainedThere, s.ExplainedBack)
	}
	if s.AgentDuplicates > 0 {
		fmt.Fprintf(w, "the agent dropped %d duplicates of probes it had answered (not counted as received)\n", s.AgentDuplicates)
	}
	if r.Err != "" && s.Kernel.N == 0 {
		fmt.Fprintf(w, "no RTT: %s\n", r.Err)
		return
	}
	rtt := func(name string, t estimator.RTT, note string) {
		// Percentiles only where n carries them: the p99 of 20 values is
		// one of the two largest.
		line := fmt.Sprintf("RTT  %-7s n=%-6d min %-8s median %-8s", name, t.N, us(t.Min), us(t.Median))
		for _, p := range []struct {
			name string
			v    time.Duration
			n    int
		}{{"p90", t.P90, minN90}, {"p99", t.P99, minN99}, {"p99.9", t.P999, minN999}} {
			if t.N >= p.n {
				line += fmt.Sprintf(" %s %-8s", p.name, us(p.v))
			}
		}
		line += fmt.Sprintf(" max %-8s mean %-8s", us(t.Max), us(t.Mean))
		if t.N >= 2 {
			line += fmt.Sprintf(" stddev %-8s", us(t.Stddev))
		}
		fmt.Fprintf(w, "%s %s\n", line, note)
	}
	kind := "kernel"
	if s.Kernel.ClientSource == dump.SourceUser || s.Kernel.AgentSource == dump.SourceUser {
		kind = "user-space" // no kernel source stamped both ends (e.g. GSO without eBPF)
	}
	rtt(s.Kernel.Source(), s.Kernel, "µs, "+kind+" timestamps, agent turnaround subtracted")
	if s.User.N > 0 {
		rtt("user", s.User, "µs, user space, turnaround included")
	}
	for _, v := range []struct {
		name string
		v    estimator.Variation
	}{{"there", s.There}, {"back", s.Back}, {"rtt", s.RoundTrip}} {
		if v.v.N > 0 {
			p99 := ""
			if v.v.N >= minN99 {
				p99 = " p99 " + us(v.v.PDV99)
			}
			fmt.Fprintf(w, "delay variation %-5s jitter %s µs (RFC 3550), PDV p50 %s%s max %s µs, n=%d\n",
				v.name, us(v.v.Jitter), us(v.v.PDV50), p99, us(v.v.PDVMax), v.v.N)
		}
	}
	fmt.Fprintf(w, "reordering (RFC 4737): there %d (%.2f %%, max extent %d), round trip %d (%.2f %%, max extent %d)\n",
		s.ReorderThere.Count, 100*s.ReorderThere.Ratio, s.ReorderThere.MaxExtent,
		s.ReorderRoundTrip.Count, 100*s.ReorderRoundTrip.Ratio, s.ReorderRoundTrip.MaxExtent)
	fmt.Fprintf(w, "rates at the client (%s stamps): sent %s payload, %s IP; replies received %s payload, %s IP; %s µs per frame\n",
		s.RateSource, rateOr(s.SendRate), rateOr(s.SendRateIP), rateOr(s.RecvRate), rateOr(s.RecvRateIP), us(s.TimePerFrame))
	switch {
	case r.NoRates:
		fmt.Fprintln(w, "note: no rates: the probes went in GSO batches, which kernel stamps mark once and user space stamps at once; --no-gso stamps every probe")
	case s.RateSource == dump.SourceUser && s.RecvRate > 0:
		fmt.Fprintln(w, "note: the rates rest on user-space stamps, which batched receives compress: read them as upper bounds")
	}
	if s.ScheduledSends > 0 {
		fmt.Fprintf(w, "send schedule: mean error %s µs (%.2f %% of the interval), max %s µs, %d missed slots of %d\n",
			us(s.ScheduleMeanErr), s.ScheduleErrPct, us(s.ScheduleMaxErr), s.Missed, s.ScheduledSends)
	}
	if s.Unstamped > 0 {
		why := ""
		if s.GSO {
			why = " (probes went in UDP GSO batches, stamped once per batch; --no-gso stamps every probe)"
		}
		fmt.Fprintf(w, "note: %d replies lacked %s timestamps and are left out of the kernel RTT%s\n", s.Unstamped, s.Kernel.Source(), why)
	}
}

// Percentiles need samples to stand on: nearest rank gives the p99 of
// fewer than 100 values as one of the few largest, which says little. A
// percentile of fewer samples than these is not printed (null in JSON).
const (
	minN90  = 10
	minN99  = 100
	minN999 = 1000
)

// RTTJSON is an RTT distribution in µs; percentiles are null where n is too
// small for them, and the whole object null when nothing was measured.
type RTTJSON struct {
	Source   string   `json:"source"`
	N        int      `json:"n"`
	MinUs    float64  `json:"min_us"`
	MedianUs float64  `json:"median_us"`
	MeanUs   float64  `json:"mean_us"`
	P90Us    *float64 `json:"p90_us"`
	P99Us    *float64 `json:"p99_us"`
	P999Us   *float64 `json:"p999_us"`
	MaxUs    float64  `json:"max_us"`
	StddevUs *float64 `json:"stddev_us"` // null for n < 2
}

func rttOf(r estimator.RTT) *RTTJSON {
	if r.N == 0 {
		return nil
	}
	return &RTTJSON{r.Source(), r.N, usf(r.Min), usf(r.Median), usf(r.Mean),
		orNull(usf(r.P90), r.N >= minN90), orNull(usf(r.P99), r.N >= minN99), orNull(usf(r.P999), r.N >= minN999),
		usf(r.Max), orNull(usf(r.Stddev), r.N >= 2)}
}

// VariationJSON is the delay variation of one view, µs.
type VariationJSON struct {
	N        int      `json:"n"`
	JitterUs float64  `json:"jitter_us"`
	PDV50Us  float64  `json:"pdv_p50_us"`
	PDV99Us  *float64 `json:"pdv_p99_us"`
	PDVMaxUs float64  `json:"pdv_max_us"`
}

func variationOf(v estimator.Variation) *VariationJSON {
	if v.N == 0 {
		return nil
	}
	return &VariationJSON{v.N, usf(v.Jitter), usf(v.PDV50), orNull(usf(v.PDV99), v.N >= minN99), usf(v.PDVMax)}
}

// ReorderJSON is RFC 4737 reordering of one view.
type ReorderJSON struct {
	N          int     `json:"n"`
	Count      int     `json:"count"`
	Ratio      float64 `json:"ratio"`
	MaxExtent  int     `json:"max_extent"`
	MeanExtent float64 `json:"mean_extent"`
}

func reorderOf(r estimator.Reorder) ReorderJSON {
	return ReorderJSON{r.N, r.Count, r.Ratio, r.MaxExtent, r.MeanExtent}
}

// EchoRatesJSON are the rates of one measurement, bit/s, both taken at the
// client: the send rate from its transmit stamps, the receive rate from
// its receive stamps of the replies. A rate not measured is null.
type EchoRatesJSON struct {
	Source            string   `json:"source"`
	SendPayloadBps    *float64 `json:"send_payload_bps"`
	SendIPBps         *float64 `json:"send_ip_bps"`
	ReceivePayloadBps *float64 `json:"receive_payload_bps"`
	ReceiveIPBps      *float64 `json:"receive_ip_bps"`
	TimePerFrameUs    *float64 `json:"time_per_frame_us"`
}

// EchoPointJSON is one measurement of an echo run.
type EchoPointJSON struct {
	Index             int            `json:"index"`
	SizeBytes         int            `json:"size_bytes"` // UDP payload
	WaitUs            float64        `json:"wait_us"`
	Count             int            `json:"count"`
	GSO               bool           `json:"gso"`
	Sent              int            `json:"sent"`
	Received          int            `json:"received"`
	Lost              int            `json:"lost"`
	LostThere         int            `json:"lost_there"`
	LostBack          int            `json:"lost_back"`
	AgentSocketDrops  uint64         `json:"agent_socket_drops"`
	ClientSocketDrops uint64         `json:"client_socket_drops"`
	AgentLimited      int            `json:"agent_limited"`
	AgentDuplicates   int            `json:"agent_duplicates"`
	ExplainedThere    int            `json:"explained_there"`
	ExplainedBack     int            `json:"explained_back"`
	Duplicates        int            `json:"duplicates"`
	CorruptedThere    int            `json:"corrupted_there"`
	CorruptedBack     int            `json:"corrupted_back"`
	Unstamped         int            `json:"unstamped"`
	RTT               *RTTJSON       `json:"rtt"`
	UserRTT           *RTTJSON       `json:"user_rtt"`
	There             *VariationJSON `json:"there"`
	Back              *VariationJSON `json:"back"`
	RoundTrip         *VariationJSON `json:"round_trip"`
	ReorderThere      ReorderJSON    `json:"reorder_there"`
	ReorderRoundTrip  ReorderJSON    `json:"reorder_round_trip"`
	Rates             EchoRatesJSON  `json:"rates"`
	Schedule          *ScheduleJSON  `json:"schedule"` // null unless paced
	Error             *string        `json:"error"`
}

// ScheduleJSON is how well a paced sender kept its schedule.
type ScheduleJSON struct {
	Sends     int     `json:"sends"`
	MeanErrUs float64 `json:"mean_error_us"`
	MaxErrUs  float64 `json:"max_error_us"`
	ErrPct    float64 `json:"error_pct"`
	Missed    int     `json:"missed"`
}

// EchoParamsJSON is what an echo run asked for first (a sweep's points
// each say their own size and wait).
type EchoParamsJSON struct {
	Agent     string  `json:"agent"`
	Count     int     `json:"count"`
	SizeBytes int     `json:"size_bytes"`
	WaitUs    float64 `json:"wait_us"`
}

// EchoDoc is the JSON document of an echo run: one measurement or a sweep,
// the same shape.
type EchoDoc struct {
	Schema       string          `json:"schema"`
	Start        Start           `json:"start"`
	Params       EchoParamsJSON  `json:"params"`
	Measurements []EchoPointJSON `json:"measurements"`
}

func pointJSON(r echoRow) EchoPointJSON {
	s := r.Stats
	out := EchoPointJSON{
		Index: r.Point.Index, SizeBytes: r.Point.Size, WaitUs: usf(r.Point.Wait), Count: r.Point.Count, GSO: s.GSO,
		Sent: s.Sent, Received: s.Received, Lost: s.Lost(),
		LostThere: s.LostThere, LostBack: s.LostBack, AgentSocketDrops: s.AgentSocketDrops, ClientSocketDrops: s.ClientSocketDrops,
		AgentLimited: s.AgentLimited, AgentDuplicates: s.AgentDuplicates, ExplainedThere: s.ExplainedThere, ExplainedBack: s.ExplainedBack,
		Duplicates: s.Duplicates, CorruptedThere: s.CorruptedThere, CorruptedBack: s.CorruptedBack, Unstamped: s.Unstamped,
		RTT: rttOf(s.Kernel), UserRTT: rttOf(s.User),
		There: variationOf(s.There), Back: variationOf(s.Back), RoundTrip: variationOf(s.RoundTrip),
		ReorderThere: reorderOf(s.ReorderThere), ReorderRoundTrip: reorderOf(s.ReorderRoundTrip),
		Rates: EchoRatesJSON{Source: s.RateSource.String(),
			SendPayloadBps: orNull(s.SendRate, s.SendRate > 0), SendIPBps: orNull(s.SendRateIP, s.SendRateIP > 0),
			ReceivePayloadBps: orNull(s.RecvRate, s.RecvRate > 0), ReceiveIPBps: orNull(s.RecvRateIP, s.RecvRateIP > 0),
			TimePerFrameUs: orNull(usf(s.TimePerFrame), s.TimePerFrame > 0)},
	}
	if r.Err != "" {
		out.Error = &r.Err
	}
	if s.ScheduledSends > 0 {
		out.Schedule = &ScheduleJSON{s.ScheduledSends, usf(s.ScheduleMeanErr), usf(s.ScheduleMaxErr), s.ScheduleErrPct, s.Missed}
	}
	return out
}

// EchoDocument builds the JSON document of an echo run.
func EchoDocument(info EchoInfo, rows []echoRow) EchoDoc {
	pts := make([]EchoPointJSON, len(rows))
	for i, r := range rows {
		pts[i] = pointJSON(r)
	}
	return EchoDoc{Schema: SchemaEcho, Start: info.Start,
		Params:       EchoParamsJSON{Agent: info.Agent, Count: info.Count, SizeBytes: info.Size, WaitUs: usf(info.Interval)},
		Measurements: pts}
}

func echoJSON(w io.Writer, info EchoInfo, rows []echoRow) error {
	return writeDoc(w, EchoDocument(info, rows))
}

// echoCSV prints a header and a row per measurement; times in µs, rates in
// bit/s.
func echoCSV(w io.Writer, rows []echoRow) error {
	cw := csv.NewWriter(w)
	cw.Write([]string{"size", "wait_us", "sent", "received", "lost_there", "lost_back", "agent_socket_drops", "client_socket_drops",
		"duplicates", "reordered", "corrupted", "rtt_source", "rtt_min_us", "rtt_median_us", "rtt_mean_us", "rtt_p90_us", "rtt_p99_us",
		"rtt_p999_us", "rtt_max_us", "rtt_stddev_us", "user_rtt_median_us", "jitter_there_us", "jitter_back_us", "pdv_there_p99_us",
		"pdv_back_p99_us", "send_bps", "recv_bps", "send_ip_bps", "recv_ip_bps", "time_per_frame_us", "schedule_error_pct", "missed", "error"})
	// Rates to the bit/s, times to the ns they were taken in: no float noise.
	f := func(v float64) string { return strconv.FormatFloat(v, 'f', 0, 64) }
	d := func(v time.Duration) string { return strconv.FormatFloat(usf(v), 'f', 3, 64) }
	pct := func(v float64) string { return strconv.FormatFloat(v, 'f', 2, 64) }
	fIf := func(v float64) string { // a rate not measured is an empty cell
		if v <= 0 {
			return ""
		}
		return f(v)
	}
	// A percentile n does not carry is an empty cell, as in JSON it is null.
	dIf := func(v time.Duration, ok bool) string {
		if !ok {
			return ""
		}
		return d(v)
	}
	i := strconv.Itoa
	for _, r := range rows {
		s := r.Stats
		cw.Write([]string{i(r.Point.Size), strconv.FormatFloat(usf(r.Point.Wait), 'f', -1, 64), i(s.Sent), i(s.Received), i(s.LostThere), i(s.LostBack),
			strconv.FormatUint(s.AgentSocketDrops, 10), strconv.FormatUint(s.ClientSocketDrops, 10), i(s.Duplicates),
			i(s.ReorderRoundTrip.Count), i(s.CorruptedThere + s.CorruptedBack), s.Kernel.Source(), d(s.Kernel.Min), d(s.Kernel.Median),
			d(s.Kernel.Mean), dIf(s.Kernel.P90, s.Kernel.N >= minN90), dIf(s.Kernel.P99, s.Kernel.N >= minN99),
			dIf(s.Kernel.P999, s.Kernel.N >= minN999), d(s.Kernel.Max), dIf(s.Kernel.Stddev, s.Kernel.N >= 2), d(s.User.Median),
			d(s.There.Jitter), d(s.Back.Jitter), dIf(s.There.PDV99, s.There.N >= minN99), dIf(s.Back.PDV99, s.Back.N >= minN99), fIf(s.SendRate), fIf(s.RecvRate), fIf(s.SendRateIP),
			fIf(s.RecvRateIP), d(s.TimePerFrame), pct(s.ScheduleErrPct), i(s.Missed), r.Err})
	}
	cw.Flush()
	return cw.Error()
}

// ParseTSSource reads a --ts-source value: auto or a source name.
func ParseTSSource(s string) (dump.Source, error) {
	if s == "auto" {
		return estimator.AutoSource, nil
	}
	return dump.ParseSource(s)
}

// EchoStream prints an echo run as it is measured, one JSON object a line
// (--json-stream, as iperf3's): {"event":"start","data":...}, then an
// "interval" event per measurement, then "end".
type EchoStream struct {
	w    io.Writer
	info EchoInfo
	src  dump.Source
}

// StreamEvent is one line of --json-stream.
type StreamEvent struct {
	Event string `json:"event"` // start, interval, end
	Data  any    `json:"data"`
}

// NewEchoStream prints the start event.
func NewEchoStream(w io.Writer, info EchoInfo, src dump.Source) *EchoStream {
	doc := EchoDocument(info, nil)
	writeDocLine(w, StreamEvent{"start", struct {
		Schema string         `json:"schema"`
		Start  Start          `json:"start"`
		Params EchoParamsJSON `json:"params"`
	}{doc.Schema, doc.Start, doc.Params}})
	return &EchoStream{w, info, src}
}

// Point prints one measurement as soon as it ends.
func (s *EchoStream) Point(p EchoMeasurement) error {
	row, _ := echoRowOf(p, s.src) // an error is in the row
	return writeDocLine(s.w, StreamEvent{"interval", pointJSON(row)})
}

// End prints the end event, the number of measurements, and draws the
// plots asked for.
func (s *EchoStream) End(points []EchoMeasurement, plotDir string) error {
	if plotDir != "" && len(points) > 0 {
		if err := Echo(io.Discard, s.info, points, s.src, "json", plotDir); err != nil {
			return err
		}
	}
	return writeDocLine(s.w, StreamEvent{"end", struct {
		Measurements int `json:"measurements"`
	}{len(points)}})
}
