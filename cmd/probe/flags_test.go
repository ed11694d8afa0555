package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/probe-dev/probe/cmd/internal/report"
	"github.com/probe-dev/probe/collector/dump"
)

// Every flag of probe measure says which modes it applies to, and the
// table holds no flag that does not exist.
func TestMeasureFlagTable(t *testing.T) {
	seen := map[string]bool{}
	for _, f := range measureCommand().Flags {
		name := f.Names()[0]
		seen[name] = true
		if _, ok := measureFlagModes[name]; !ok {
			t.Errorf("--%s is not in measureFlagModes", name)
		}
	}
	for name := range measureFlagModes {
		if !seen[name] {
			t.Errorf("measureFlagModes lists --%s, which probe measure lacks", name)
		}
	}
}

// A flag that does nothing in the chosen mode, and a malformed value, are
// one line each, before anything is measured.
func TestMeasureRefusesFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--mode", "tcp", "-w", "x.msgpack"}, "-w/--write does not apply to --mode tcp (it is for echo, capacity)"},
		{[]string{"--mode", "tcp", "--csv"}, "--csv does not apply to --mode tcp"},
		{[]string{"--mode", "capacity", "--json-stream"}, "--json-stream does not apply to --mode capacity (it is for echo, tcp, quic)"},
		{[]string{"--mode", "tcp", "--pcap", "x.pcap"}, "--pcap does not apply to --mode tcp (it is for echo, capacity)"},
		{[]string{"--mode", "tcp", "--json", "--json-stream"}, "--json and --json-stream: choose one"},
		{[]string{"-R"}, "-R/--reverse does not apply to --mode echo"},
		{[]string{"--mode", "capacity", "-P", "2"}, "-P/--parallel does not apply to --mode capacity (it is for tcp, quic)"},
		{[]string{"--mode", "tcp,quic", "-f", "%be"}, "-f/--format does not apply to --mode tcp,quic"},
		{[]string{"--mode", "tcp,capacity"}, "only tcp and quic run together"},
		{[]string{"--mode", "tcp", "-t", "2"}, `invalid value "2" for -t: a duration wants a unit, did you mean 2s?`},
		{[]string{"--plot", "x.png"}, "echo draws several plots; give a directory"},
		{[]string{"--mode", "tcp", "--plot", "x"}, "want a .png or .svg file"},
		{[]string{"--bogus"}, "flag provided but not defined: -bogus"},
	} {
		out, stderr, code := run(t, exec.Command(probeBin, append([]string{"measure", "-h", "127.0.0.1:1", "--ebpf", "off"}, tc.args...)...))
		if code != 1 || out != "" || strings.Count(stderr, "\n") != 1 || !strings.Contains(stderr, tc.want) {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want one line with %q", tc.args, code, out, stderr, tc.want)
		}
	}
}

func TestVersion(t *testing.T) {
	out, _, code := run(t, exec.Command(probeBin, "-V"))
	for _, want := range []string{"probe ", "commit ", "go1.", "kernel ", "BTF ", "TCX ", "netem "} {
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("probe -V: exit %d, lacks %q:\n%s", code, want, out)
		}
	}
}

// probe help CMD works for every command, and the man page names them all.
func TestHelpAndMan(t *testing.T) {
	man, _, code := run(t, exec.Command(probeBin, "man"))
	if code != 0 || !strings.HasPrefix(man, ".nh\n.TH probe 1") {
		t.Fatalf("probe man: exit %d\n%.200s", code, man)
	}
	for _, c := range app().Commands {
		out, stderr, code := run(t, exec.Command(probeBin, "help", c.Name))
		if code != 0 || !strings.Contains(out, "probe "+c.Name) {
			t.Errorf("probe help %s: exit %d %s\n%s", c.Name, code, stderr, out)
		}
		if !c.Hidden && !strings.Contains(man, c.Name) {
			t.Errorf("man page lacks %s", c.Name)
		}
	}
}

// probe report and compare take their flags after the patterns too, and a
// results folder as well as a pattern.
func TestReportFlagsAfterArguments(t *testing.T) {
	root := t.TempDir()
	for k := 1; k <= 2; k++ {
		dir := filepath.Join(root, "res", fmt.Sprintf("ux_iter%d_x", k))
		os.MkdirAll(dir, 0o755)
		os.WriteFile(filepath.Join(dir, "summary.json"), []byte(fmt.Sprintf(
			`{"test_name":"ux","iteration":%d,"processes":[{"role":"server","summary":{"AvgCPU":%d}}]}`, k, 10*k)), 0o644)
	}
	out, stderr, code := run(t, exec.Command(probeBin, "report", filepath.Join(root, "res"), "--csv"))
	if code != 0 || !strings.HasPrefix(out, "role,metric,unit,lower_is_better,mean,std,n\nserver,avg CPU,%,true,15,7.07107,2\n") {
		t.Errorf("report FOLDER --csv: exit %d %s\n%s", code, stderr, out)
	}
	out, stderr, code = run(t, exec.Command(probeBin, "compare", filepath.Join(root, "res", "ux_iter1*"), filepath.Join(root, "res"), "--json"))
	if code != 0 || !strings.Contains(out, `"schema": "probe/compare/1"`) {
		t.Errorf("compare A B --json: exit %d %s\n%s", code, stderr, out)
	}
	_, stderr, code = run(t, exec.Command(probeBin, "report", filepath.Join(root, "res"), "--bogus"))
	if code != 1 || strings.Count(stderr, "\n") != 1 || !strings.Contains(stderr, "--bogus") {
		t.Errorf("an unknown flag after the folder: exit %d, %q", code, stderr)
	}
}

// docs/cli.md's table of flags and modes is the one the code checks.
func TestCLIDocTable(t *testing.T) {
	md, err := os.ReadFile("../../docs/cli.md")
	if err != nil {
		t.Fatal(err)
	}
	row := regexp.MustCompile("(?m)^\\| `--([a-z-]+)`(?: \\(`-[A-Za-z]`\\))? \\| ([a-z, ]+) \\|$")
	seen := map[string]bool{}
	for _, m := range row.FindAllStringSubmatch(string(md), -1) {
		want := measureFlagModes[m[1]].String()
		if measureFlagModes[m[1]] == modeAll {
			want = "all"
		}
		if m[2] != want {
			t.Errorf("docs/cli.md: --%s applies to %q, the code says %q", m[1], m[2], want)
		}
		seen[m[1]] = true
	}
	for name := range measureFlagModes {
		if !seen[name] {
			t.Errorf("docs/cli.md lacks --%s", name)
		}
	}
}

// --pcap writes every probe and reply at the client's kernel timestamps:
// tshark reads as many packets as the dump holds stamps, and their times
// keep the dump's spacing to the nanosecond.
func TestEchoPcap(t *testing.T) {
	needTshark(t)
	addr := localAgent(t)
	dir := t.TempDir()
	pcapPath, dumpPath := filepath.Join(dir, "e.pcap"), filepath.Join(dir, "e.msgpack")
	if _, stderr, code := measureLocal(t, addr, "-n", "50", "-i", "1ms", "-l", "200", "--pcap", pcapPath, "-w", dumpPath); code != 0 {
		t.Fatalf("measure: exit %d %s", code, stderr)
	}
	var want []int64
	p := &report.Pcap{}
	eachRecord(t, dumpPath, func(rec *dump.Record) {
		if e := rec.Echo; e != nil {
			if ts, ok := p.WallTime(e.ClientTx); ok {
				want = append(want, ts)
			}
			if ts, ok := p.WallTime(e.ClientRx); ok && e.Replies > 0 {
				want = append(want, ts)
			}
		}
	})
	checkPcap(t, pcapPath, want, 100, "208") // 50 probes, 50 replies; 200 B payload
}

// --pcap in capacity mode writes every train packet twice, when it left
// and when it arrived, at the stamps the dump holds.
func TestCapacityPcap(t *testing.T) {
	needTshark(t)
	addr := localAgent(t)
	dir := t.TempDir()
	pcapPath, dumpPath := filepath.Join(dir, "c.pcap"), filepath.Join(dir, "c.msgpack")
	if _, stderr, code := measureLocal(t, addr, "--mode", "capacity", "--quick", "--ip-size", "1200", "--pcap", pcapPath, "-w", dumpPath); code != 0 {
		t.Fatalf("measure: exit %d %s", code, stderr)
	}
	var want []int64
	p := &report.Pcap{}
	packets := 0
	eachRecord(t, dumpPath, func(rec *dump.Record) {
		if tr := rec.Train; tr != nil {
			packets += len(tr.Tx)
			for i := range tr.Tx {
				if ts, ok := p.WallTime(tr.Tx[i]); ok {
					want = append(want, ts)
				}
				if ts, ok := p.WallTime(tr.Rx[i]); ok {
					want = append(want, ts)
				}
			}
		}
	})
	t.Logf("%d train packets, %d stamps", packets, len(want))
	checkPcap(t, pcapPath, want, packets, "1180") // 1200 IP bytes less 20 of IPv4
}

func needTshark(t *testing.T) {
	if _, err := exec.LookPath("tshark"); err != nil {
		t.Skip("tshark not installed")
	}
}

// eachRecord shows each record of a dump file to f, valid during the call.
func eachRecord(t *testing.T, path string, f func(*dump.Record)) {
	t.Helper()
	file, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	r, err := dump.NewReader(file)
	if err != nil {
		t.Fatal(err)
	}
	for {
		rec, err := r.Next()
		if err != nil {
			return
		}
		f(rec)
	}
}

// checkPcap reads a capture back with tshark and holds it to the stamps of
// the dump, in order: as many packets (at least least), each of UDP length
// udpLen, each as far from the first as the dump says, to the nanosecond.
func checkPcap(t *testing.T, path string, want []int64, least int, udpLen string) {
	t.Helper()
	out, err := exec.Command("tshark", "-r", path, "-T", "fields", "-e", "frame.time_epoch", "-e", "udp.length").Output()
	if err != nil {
		t.Fatalf("tshark: %v", err)
	}
	var got []int64
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		sec, frac, _ := strings.Cut(f[0], ".")
		s, _ := strconv.ParseInt(sec, 10, 64)
		ns, _ := strconv.ParseInt((frac + "000000000")[:9], 10, 64)
		got = append(got, s*1e9+ns)
		if f[1] != udpLen {
			t.Fatalf("UDP length %s, want %s", f[1], udpLen)
		}
	}
	if len(got) != len(want) || len(got) < least {
		t.Fatalf("tshark read %d packets, the dump has %d stamps (want at least %d)", len(got), len(want), least)
	}
	for i := range got {
		if got[i]-got[0] != want[i]-want[0] {
			t.Fatalf("packet %d at %+d ns from the first, the dump says %+d", i, got[i]-got[0], want[i]-want[0])
		}
	}
}
