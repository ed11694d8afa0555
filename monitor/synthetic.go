package monitor

import (
	"context"
	"fmt"
	"time"
)

// AddSynthetic archives a finished run of t every step from from to to,
// with the values gen gives, many runs per transaction: it fills an archive
// for benches and page tests far faster than AddRun's commit per run.
func (a *Archive) AddSynthetic(ctx context.Context, t *Test, from, to time.Time, step time.Duration, gen func(time.Time) map[string]float64) (int, error) {
	inst, ok := a.instID[t.Name]
	if !ok {
		return 0, fmt.Errorf("archive: unknown instance %s", t.Name)
	}
	if step <= 0 {
		return 0, fmt.Errorf("step %v: want above 0", step)
	}
	n := 0
	for day := from; day.Before(to); day = day.Add(24 * time.Hour) {
		tx, err := a.db.BeginTx(ctx, nil)
		if err != nil {
			return n, err
		}
		run, err := tx.PrepareContext(ctx, `INSERT INTO runs (instance_id, scheduled_ns, start_ns, end_ns, state) VALUES (?, ?, ?, ?, 'finished')`)
		if err != nil {
			tx.Rollback()
			return n, err
		}
		val, err := tx.PrepareContext(ctx, `INSERT INTO mvalues (run_id, instance_id, characteristic_id, t_ns, value) VALUES (?, ?, ?, ?, ?)`)
		if err != nil {
			tx.Rollback()
			return n, err
		}
		for ts := day; ts.Before(to) && ts.Before(day.Add(24*time.Hour)); ts = ts.Add(step) {
			res, err := run.ExecContext(ctx, inst, ts.UnixNano(), ts.UnixNano(), ts.Add(time.Second).UnixNano())
			if err != nil {
				tx.Rollback()
				return n, err
			}
			id, _ := res.LastInsertId()
			for name, v := range gen(ts) {
				cid, ok := a.charID[t.Type][name]
				if !ok {
					tx.Rollback()
					return n, fmt.Errorf("%s has no characteristic %q", t.Type, name)
				}
				if _, err := val.ExecContext(ctx, id, inst, cid, ts.UnixNano(), v); err != nil {
					tx.Rollback()
					return n, err
				}
			}
			n++
		}
		run.Close()
		val.Close()
		if err := tx.Commit(); err != nil {
			return n, err
		}
	}
	return n, nil
}
