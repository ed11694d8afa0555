package monitor

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strconv"
	"time"
)

// ExportFormat is how Export writes runs.
type ExportFormat uint8

// Export formats.
const (
	CSV ExportFormat = iota
	JSON
)

// ParseExportFormat reads "csv" or "json".
func ParseExportFormat(s string) (ExportFormat, error) {
	switch s {
	case "csv":
		return CSV, nil
	case "json":
		return JSON, nil
	}
	return 0, fmt.Errorf("export format %q: want csv or json", s)
}

// exportRun is a run as exported: times in RFC 3339 with nanoseconds, values
// in base units by characteristic.
type exportRun struct {
	ID        int64              `json:"id"`
	Test      string             `json:"test"`
	Scheduled string             `json:"scheduled"`
	Start     string             `json:"start,omitempty"`
	End       string             `json:"end,omitempty"`
	State     string             `json:"state"`
	Error     string             `json:"error,omitempty"`
	Values    map[string]float64 `json:"values,omitempty"`
}

func stamp(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339Nano)
}

// Export writes the runs f selects: CSV has a row per run and
// characteristic (a run without values has one row with an empty
// characteristic), JSON a list of runs.
func (a *Archive) Export(ctx context.Context, w io.Writer, format ExportFormat, f RunFilter) error {
	runs, err := a.Runs(ctx, f)
	if err != nil {
		return err
	}
	if format == JSON {
		out := make([]exportRun, len(runs))
		for i, r := range runs {
			out[i] = exportRun{ID: r.ID, Test: r.Instance, Scheduled: stamp(r.Scheduled), Start: stamp(r.Start), End: stamp(r.End),
				State: r.State.String(), Error: r.Error, Values: r.Values}
		}
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	}
	cw := csv.NewWriter(w)
	cw.Write([]string{"run", "test", "scheduled", "start", "end", "state", "error", "characteristic", "value"})
	for _, r := range runs {
		row := []string{strconv.FormatInt(r.ID, 10), r.Instance, stamp(r.Scheduled), stamp(r.Start), stamp(r.End), r.State.String(), r.Error}
		if len(r.Values) == 0 {
			cw.Write(append(row, "", ""))
			continue
		}
		names := make([]string, 0, len(r.Values))
		for k := range r.Values {
			names = append(names, k)
		}
		slices.Sort(names)
		for _, k := range names {
			cw.Write(append(slices.Clone(row), k, strconv.FormatFloat(r.Values[k], 'g', -1, 64)))
		}
	}
	cw.Flush()
	return cw.Error()
}
