package main

import (
	"bufio"
	"encoding/json"
	"math"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/probe-dev/probe/cmd/internal/report"
	"golang.org/x/sys/unix"
)

// streamed runs cmd and notes when each line of its stdout arrived.
func streamed(t *testing.T, cmd *exec.Cmd) (lines []string, at []time.Duration, stderr string, code int) {
	return streamedBy(t, cmd, (*exec.Cmd).Start)
}

// streamedBy is streamed with cmd started by start (in a namespace).
func streamedBy(t *testing.T, cmd *exec.Cmd, start func(*exec.Cmd) error) (lines []string, at []time.Duration, stderr string, code int) {
	t.Helper()
	var errb strings.Builder
	cmd.Stderr = &errb
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	begin := time.Now()
	if err := start(cmd); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(out)
	sc.Buffer(nil, 64<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		at = append(at, time.Since(begin))
	}
	err = cmd.Wait()
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return lines, at, errb.String(), code
}

// docSchema is docs/json.md's schema.
func docSchema(t *testing.T) report.Schema {
	t.Helper()
	md, err := os.ReadFile("../../docs/json.md")
	if err != nil {
		t.Fatal(err)
	}
	s, err := report.ParseSchema(md)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// checkStreamed holds a stream to docs/json.md and to time: at least
// intervals interval lines, the first of them printed at least early
// before the end line, so while the run went on and not all at its end.
func checkStreamed(t *testing.T, name string, lines []string, at []time.Duration, intervals int, early time.Duration) {
	t.Helper()
	n, err := docSchema(t).CheckStream([]byte(strings.Join(lines, "\n") + "\n"))
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	if n < intervals {
		t.Fatalf("%s: %d intervals, want at least %d", name, n, intervals)
	}
	lead := at[len(at)-1] - at[1]
	t.Logf("%s: %d intervals; the first came %v before the end", name, n, lead.Round(time.Millisecond))
	if lead < early {
		t.Errorf("%s: the first interval came %v before the end, want at least %v: not streamed", name, lead, early)
	}
}

// --json-stream for tcp and quic: an interval line each --report interval
// as the run goes, the document at the end, all as docs/json.md says; the
// bytes the TCP intervals count (what the agent acknowledged) add up to
// what the agent's side says it received.
func TestTCPQUICStream(t *testing.T) {
	addr := localAgent(t)
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"tcp", []string{"--mode", "tcp", "-P", "2"}},
		{"tcp -R", []string{"--mode", "tcp", "-R"}},
		{"quic", []string{"--mode", "quic", "--bidir"}},
	} {
		args := append([]string{"measure", "-h", addr, "--ebpf", "off", "-t", "3s", "--report", "500ms", "--json-stream"}, tc.args...)
		lines, at, stderr, code := streamed(t, exec.Command(probeBin, args...))
		if code != 0 {
			t.Fatalf("%s: exit %d %s", tc.name, code, stderr)
		}
		// 3 s in 500 ms intervals, the last one or two possibly joined.
		checkStreamed(t, tc.name, lines, at, 5, time.Second)
		if tc.name != "tcp" {
			continue
		}
		var live uint64
		for _, l := range lines[1 : len(lines)-1] {
			var ev struct{ Data report.TCPLiveIntervalJSON }
			json.Unmarshal([]byte(l), &ev)
			live += ev.Data.Bytes
		}
		var end struct{ Data report.TCPDoc }
		json.Unmarshal([]byte(lines[len(lines)-1]), &end)
		got := end.Data.End.Agent.BytesReceived
		t.Logf("live intervals counted %d B, the agent received %d B (%+.3f %%)", live, got, 100*(float64(live)-float64(got))/float64(got))
		if got == 0 || math.Abs(float64(live)-float64(got)) > 0.01*float64(got) {
			t.Errorf("live intervals counted %d B, the agent received %d B: want within 1 %%", live, got)
		}
	}
	// Against a perf server, without a control connection, the same.
	perf, _, pin := perfAgent(t)
	lines, at, stderr, code := streamed(t, exec.Command(probeBin, "measure", "--perf-server", perf, "--pin", pin, "-R",
		"-t", "2s", "--report", "500ms", "--json-stream"))
	if code != 0 {
		t.Fatalf("--perf-server: exit %d %s", code, stderr)
	}
	checkStreamed(t, "quic, perf server", lines, at, 3, 700*time.Millisecond)

	_, stderr, code = measureLocal(t, addr, "--mode", "tcp,quic", "--json-stream")
	if code != 1 || !strings.Contains(stderr, "--json-stream does not apply to --mode tcp,quic") {
		t.Errorf("tcp,quic --json-stream: exit %d, %q", code, stderr)
	}
}

// probe watch --json-stream prints each sample as it is taken; without
// it, a live line every --report interval, and none with --quiet.
func TestWatchLive(t *testing.T) {
	lines, at, stderr, code := streamed(t, exec.Command(probeBin, "watch", "--ebpf", "off", "--json-stream", "--", "sleep", "1.5"))
	if code != 0 {
		t.Fatalf("watch --json-stream: exit %d %s", code, stderr)
	}
	checkStreamed(t, "watch", lines, at, 10, time.Second)

	lines, at, stderr, code = streamed(t, exec.Command(probeBin, "watch", "--ebpf", "off", "--report", "300ms", "--", "sleep", "1.5"))
	if code != 0 || len(lines) < 4 || lines[0] != report.WatchLineHeader {
		t.Fatalf("watch: exit %d %s, want the header and a line every 300 ms first:\n%s", code, stderr, strings.Join(lines, "\n"))
	}
	live := 0
	for _, l := range lines[1:] {
		if strings.HasSuffix(l, "bit/s") {
			live++
		}
	}
	if live < 3 || at[1] > at[len(at)-1]-time.Second/2 {
		t.Errorf("%d live lines, the first at %v of %v: want at least 3 as the command runs", live, at[1], at[len(at)-1])
	}
	out, stderr, code := run(t, exec.Command(probeBin, "watch", "--ebpf", "off", "--report", "300ms", "--quiet", "--", "sleep", "1"))
	if code != 0 || strings.Contains(out, "bit/s\n") || strings.Contains(out, "cswch") || !strings.HasPrefix(out, "sleep (pid") {
		t.Errorf("watch --quiet: exit %d %s, want the summary alone:\n%s", code, stderr, out)
	}
	_, stderr, code = run(t, exec.Command(probeBin, "watch", "--json", "--json-stream", "--", "true"))
	if code != 1 || !strings.Contains(stderr, "choose one") {
		t.Errorf("--json --json-stream: exit %d %q", code, stderr)
	}
}

// Across the 20 Mbit/s testbed link, the live TCP intervals read the link:
// after the first (slow start), their mean lies within 5 % of the link's
// goodput bracket and none reads 10 % above it, as the intervals arrive.
func TestTCPStreamAcrossTestbed(t *testing.T) {
	tb, _ := testbedWithAgent(t, "h15s", 0)
	cmd := exec.Command(probeBin, "measure", "-h", tb.A.Addr.String(), "--ebpf", "on", "--mode", "tcp", "-t", "5s", "--json-stream")
	lines, at, stderr, code := streamedBy(t, cmd, tb.B.Start)
	if code != 0 {
		t.Fatalf("measure: exit %d\n%s", code, stderr)
	}
	checkStreamed(t, "tcp", lines, at, 5, 3*time.Second)
	lo, hi := linkTruth(t, tb, 20e6)
	lo, hi = lo*1448/1500, hi*1448/1500 // TCP payload of a full-size IP packet
	var sum float64
	n := 0
	for i, l := range lines[2 : len(lines)-1] {
		var ev struct{ Data report.TCPLiveIntervalJSON }
		json.Unmarshal([]byte(l), &ev)
		iv := ev.Data
		t.Logf("live %.1f–%.1f s: %.3f Mbit/s", iv.StartS, iv.EndS, iv.Bps/1e6)
		if iv.EndS-iv.StartS < 0.5 {
			continue // the end's sliver
		}
		if iv.Bps > 1.1*hi {
			t.Errorf("interval %d reads %.3f Mbit/s, above the link's %.3f", i+1, iv.Bps/1e6, hi/1e6)
		}
		sum += iv.Bps
		n++
	}
	mean := sum / float64(n)
	t.Logf("mean of %d live intervals %.3f Mbit/s; link goodput [%.3f, %.3f]", n, mean/1e6, lo/1e6, hi/1e6)
	if n < 3 || mean < 0.95*lo || mean > 1.05*hi {
		t.Fatalf("mean live rate %.3f Mbit/s over %d intervals, want [%.3f, %.3f] ± 5 %%", mean/1e6, n, lo/1e6, hi/1e6)
	}
}

// The storage writes probe watch counts are those of the command: dd
// writing 8 MiB and syncing them shows at least 8 MiB written, and not
// 10 % more.
func TestWatchCountsWrites(t *testing.T) {
	dir := t.TempDir()
	var fs unix.Statfs_t
	if err := unix.Statfs(dir, &fs); err != nil || fs.Type == unix.TMPFS_MAGIC {
		t.Skipf("%s is on tmpfs (or unknown: %v), which counts no storage writes", dir, err)
	}
	out, stderr, code := run(t, exec.Command(probeBin, "watch", "--ebpf", "off", "--json", "--",
		"dd", "if=/dev/zero", "of="+dir+"/x", "bs=1M", "count=8", "conv=fsync", "status=none"))
	if code != 0 {
		t.Fatalf("watch dd: exit %d %s", code, stderr)
	}
	doc := decode[report.WatchDoc](t, out)
	w := doc.Samples[len(doc.Samples)-1].WriteBytes
	t.Logf("dd wrote 8 MiB; watch counted %d B", w)
	if w < 8<<20 || w > 8<<20*11/10 {
		t.Errorf("watch counted %d B written, want 8 MiB (+10 %% for metadata)", w)
	}
}
