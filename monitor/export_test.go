package monitor

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"path/filepath"
	"testing"
	"time"
)

func TestExport(t *testing.T) {
	c := testConfig(t)
	a := openTestArchive(t, c, filepath.Join(t.TempDir(), "a.db"))
	ctx := context.Background()
	st := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	a.AddRun(ctx, c.Tests[0], &Run{Scheduled: st, Start: st, End: st.Add(time.Second), State: Finished, Values: map[string]float64{"rtt": 0.0015, "loss": 0.25}})
	a.AddRun(ctx, c.Tests[1], &Run{Scheduled: st, State: NotStarted, Error: "no slot in the slip window: x"})
	var b bytes.Buffer
	if err := a.Export(ctx, &b, CSV, RunFilter{}); err != nil {
		t.Fatal(err)
	}
	rows, err := csv.NewReader(&b).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 4 || rows[1][1] != "rtt-b" || rows[1][7] != "loss" || rows[1][8] != "0.25" || rows[2][8] != "0.0015" ||
		rows[3][5] != "not_started" || rows[3][6] != "no slot in the slip window: x" || rows[3][3] != "" {
		t.Errorf("CSV:\n%q", rows)
	}
	b.Reset()
	if err := a.Export(ctx, &b, JSON, RunFilter{Instance: "rtt-b"}); err != nil {
		t.Fatal(err)
	}
	var runs []exportRun
	if err := json.Unmarshal(b.Bytes(), &runs); err != nil {
		t.Fatal(err)
	}
	if len(runs) != 1 || runs[0].Values["rtt"] != 0.0015 || runs[0].Start != "2026-03-01T12:00:00Z" || runs[0].State != "finished" {
		t.Errorf("JSON: %+v", runs)
	}
}
