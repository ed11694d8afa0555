package monitor

import (
	"context"
	"database/sql"
	"fmt"
	"math"
	"slices"
	"time"
)

// aggregateBatch bounds the runs one pass takes up, so that a pass over a
// large backlog does not hold the write lock for long.
const aggregateBatch = 2000

// bucketKey is one aggregate: an instance's characteristic over one period
// starting at t.
type bucketKey struct {
	inst, char, period, t int64
}

// Aggregate brings the aggregates up to date with every run not yet
// aggregated, then deletes raw values past their type's deadline that are
// aggregated. Each touched bucket is computed again from all its raw
// values, so a run that lands late in a bucket counts too. It returns how
// many runs it took up.
func (a *Archive) Aggregate(ctx context.Context, now time.Time) (int, error) {
	total := 0
	for {
		n, err := a.aggregatePass(ctx)
		total += n
		if err != nil || n < aggregateBatch {
			if err == nil {
				err = a.expire(ctx, now)
			}
			return total, err
		}
	}
}

func (a *Archive) aggregatePass(ctx context.Context) (int, error) {
	tx, err := a.db.BeginTx(ctx, nil)
	if err != nil {
		return 0, err
	}
	defer tx.Rollback()
	rows, err := tx.QueryContext(ctx, `SELECT r.id, tt.name, m.instance_id, m.characteristic_id, m.t_ns
		FROM (SELECT id, instance_id FROM runs WHERE aggregated = 0 ORDER BY id LIMIT ?) r
		JOIN instances i ON i.id = r.instance_id JOIN test_types tt ON tt.id = i.test_type_id
		LEFT JOIN mvalues m ON m.run_id = r.id`, aggregateBatch)
	if err != nil {
		return 0, fmt.Errorf("aggregate: %w", err)
	}
	runs := map[int64]bool{}
	buckets := map[bucketKey]bool{}
	for rows.Next() {
		var id int64
		var tn string
		var inst, char, t *int64
		if err := rows.Scan(&id, &tn, &inst, &char, &t); err != nil {
			rows.Close()
			return 0, err
		}
		runs[id] = true
		if inst == nil {
			continue // a run without values
		}
		typ, err := ParseTestType(tn)
		if err != nil {
			rows.Close()
			return 0, err
		}
		for _, p := range a.periods[typ] {
			pn := int64(p)
			buckets[bucketKey{*inst, *char, pn, *t - mod(*t, pn)}] = true
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, err
	}
	if err := a.recompute(ctx, tx, buckets); err != nil {
		return 0, err
	}
	mark, err := tx.PrepareContext(ctx, `UPDATE runs SET aggregated = 1 WHERE id = ?`)
	if err != nil {
		return 0, err
	}
	defer mark.Close()
	for id := range runs {
		if _, err := mark.ExecContext(ctx, id); err != nil {
			return 0, err
		}
	}
	return len(runs), tx.Commit()
}

// seriesKey is one instance's characteristic at one aggregation period.
type seriesKey struct{ inst, char, period int64 }

// recompute computes the touched buckets again from their raw values: one
// ordered read per series over the span of its touched buckets, rather than
// a query per bucket.
func (a *Archive) recompute(ctx context.Context, tx *sql.Tx, buckets map[bucketKey]bool) error {
	touched := map[seriesKey]map[int64]bool{}
	for k := range buckets {
		sk := seriesKey{k.inst, k.char, k.period}
		if touched[sk] == nil {
			touched[sk] = map[int64]bool{}
		}
		touched[sk][k.t] = true
	}
	sel, err := tx.PrepareContext(ctx, `SELECT t_ns, value FROM mvalues WHERE instance_id = ? AND characteristic_id = ? AND t_ns >= ? AND t_ns < ? ORDER BY t_ns`)
	if err != nil {
		return err
	}
	defer sel.Close()
	up, err := tx.PrepareContext(ctx, `INSERT INTO aggregations (instance_id, characteristic_id, period_ns, t_ns, count, min, mean, max, p95)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO UPDATE SET count = excluded.count, min = excluded.min,
		mean = excluded.mean, max = excluded.max, p95 = excluded.p95`)
	if err != nil {
		return err
	}
	defer up.Close()
	for sk, starts := range touched {
		lo, hi := int64(math.MaxInt64), int64(math.MinInt64)
		for t := range starts {
			lo, hi = min(lo, t), max(hi, t)
		}
		rows, err := sel.QueryContext(ctx, sk.inst, sk.char, lo, hi+sk.period)
		if err != nil {
			return fmt.Errorf("aggregate: %w", err)
		}
		var vals []float64
		cur := int64(math.MinInt64)
		flush := func() error {
			if len(vals) == 0 || !starts[cur] {
				return nil
			}
			s := summarise(vals)
			_, err := up.ExecContext(ctx, sk.inst, sk.char, sk.period, cur, s.Count, s.Min, s.Value, s.Max, s.P95)
			return err
		}
		for rows.Next() {
			var t int64
			var v float64
			if err := rows.Scan(&t, &v); err != nil {
				rows.Close()
				return err
			}
			if b := t - mod(t, sk.period); b != cur {
				if err := flush(); err != nil {
					rows.Close()
					return fmt.Errorf("aggregate: %w", err)
				}
				cur, vals = b, vals[:0]
			}
			vals = append(vals, v)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		if err := flush(); err != nil {
			return fmt.Errorf("aggregate: %w", err)
		}
	}
	return nil
}

// expire deletes raw values past their type's deadline whose runs are
// aggregated.
func (a *Archive) expire(ctx context.Context, now time.Time) error {
	for t, keep := range a.keepRaw {
		_, err := a.db.ExecContext(ctx, `DELETE FROM mvalues WHERE t_ns < ?
			AND instance_id IN (SELECT id FROM instances WHERE test_type_id = ?)
			AND run_id IN (SELECT id FROM runs WHERE aggregated = 1)`, now.Add(-keep).UnixNano(), a.typeID[t])
		if err != nil {
			return fmt.Errorf("delete raw values of %s: %w", t, err)
		}
	}
	return nil
}

// summarise is an aggregate of vals (which it sorts): count, min, mean, max
// and the 95th percentile by nearest rank.
func summarise(vals []float64) Point {
	slices.Sort(vals)
	sum := 0.0
	for _, v := range vals {
		sum += v
	}
	return Point{Count: len(vals), Min: vals[0], Max: vals[len(vals)-1], Value: sum / float64(len(vals)), P95: nearestRank(vals, 95)}
}

// nearestRank is the smallest value with at least pct % of sorted at or
// below it.
func nearestRank(sorted []float64, pct float64) float64 {
	i := int(math.Ceil(pct/100*float64(len(sorted)))) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

func mod(a, b int64) int64 {
	m := a % b
	if m < 0 {
		m += b
	}
	return m
}
