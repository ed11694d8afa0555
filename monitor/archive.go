package monitor

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	_ "modernc.org/sqlite" // the pure-Go SQLite driver, "sqlite"
)

// The archive is one SQLite file in WAL mode. Its tables follow the usual
// monitoring archive: test types and their characteristics, instances, runs
// (each with its exit state and error), measured values (mvalues) and
// aggregations per period. Times are Unix nanoseconds.
const schema = `
CREATE TABLE IF NOT EXISTS test_types (
	id INTEGER PRIMARY KEY,
	name TEXT NOT NULL UNIQUE,
	keep_raw_ns INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS characteristics (
	id INTEGER PRIMARY KEY,
	test_type_id INTEGER NOT NULL REFERENCES test_types(id),
	name TEXT NOT NULL,
	unit TEXT NOT NULL,
	metric TEXT NOT NULL,
	UNIQUE (test_type_id, name)
);
CREATE TABLE IF NOT EXISTS aggregation_rules (
	test_type_id INTEGER NOT NULL REFERENCES test_types(id),
	period_ns INTEGER NOT NULL,
	PRIMARY KEY (test_type_id, period_ns)
);
CREATE TABLE IF NOT EXISTS instances (
	id INTEGER PRIMARY KEY,
	name TEXT NOT NULL UNIQUE,
	test_type_id INTEGER NOT NULL REFERENCES test_types(id),
	class TEXT NOT NULL,
	source TEXT NOT NULL,
	destination TEXT NOT NULL,
	params TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS runs (
	id INTEGER PRIMARY KEY,
	instance_id INTEGER NOT NULL REFERENCES instances(id),
	scheduled_ns INTEGER NOT NULL,
	start_ns INTEGER,
	end_ns INTEGER,
	state TEXT NOT NULL,
	error TEXT NOT NULL DEFAULT '',
	aggregated INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS runs_by_instance ON runs (instance_id, scheduled_ns);
CREATE INDEX IF NOT EXISTS runs_to_aggregate ON runs (aggregated) WHERE aggregated = 0;
CREATE TABLE IF NOT EXISTS mvalues (
	run_id INTEGER NOT NULL REFERENCES runs(id),
	instance_id INTEGER NOT NULL,
	characteristic_id INTEGER NOT NULL,
	t_ns INTEGER NOT NULL,
	value REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS mvalues_series ON mvalues (instance_id, characteristic_id, t_ns);
CREATE INDEX IF NOT EXISTS mvalues_by_run ON mvalues (run_id);
CREATE TABLE IF NOT EXISTS aggregations (
	instance_id INTEGER NOT NULL,
	characteristic_id INTEGER NOT NULL,
	period_ns INTEGER NOT NULL,
	t_ns INTEGER NOT NULL,
	count INTEGER NOT NULL,
	min REAL NOT NULL,
	mean REAL NOT NULL,
	max REAL NOT NULL,
	p95 REAL NOT NULL,
	PRIMARY KEY (instance_id, characteristic_id, period_ns, t_ns)
) WITHOUT ROWID;
`

// Archive is the monitor's store.
type Archive struct {
	db *sql.DB
	// ids of what the config named, filled by Sync.
	typeID  map[TestType]int64
	charID  map[TestType]map[string]int64
	instID  map[string]int64
	periods map[TestType][]time.Duration
	keepRaw map[TestType]time.Duration
}

// OpenArchive opens or creates the archive at path.
func OpenArchive(path string) (*Archive, error) {
	// WAL lets the web pages read while runs are written; synchronous=FULL
	// makes each committed run survive a crash of the process or the host.
	dsn := "file:" + path + "?_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)&_pragma=busy_timeout(10000)&_pragma=foreign_keys(ON)"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("open archive %s: %w", path, err)
	}
	if _, err := db.Exec(schema); err != nil {
		db.Close()
		return nil, fmt.Errorf("open archive %s: %w", path, err)
	}
	return &Archive{db: db, typeID: map[TestType]int64{}, charID: map[TestType]map[string]int64{},
		instID: map[string]int64{}, periods: map[TestType][]time.Duration{}, keepRaw: map[TestType]time.Duration{}}, nil
}

// Close closes the archive.
func (a *Archive) Close() error { return a.db.Close() }

// Sync records the config's types, rules and instances, keeping the rows
// (and ids) of those already there.
func (a *Archive) Sync(ctx context.Context, c *Config) error {
	tx, err := a.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	for _, t := range Types() {
		rules := c.Types[t]
		if len(rules.Periods) == 0 {
			rules = TypeRules{Periods: DefaultPeriods, KeepRaw: DefaultKeepRaw}
		}
		id, err := upsertID(ctx, tx, `INSERT INTO test_types (name, keep_raw_ns) VALUES (?, ?)
			ON CONFLICT (name) DO UPDATE SET keep_raw_ns = excluded.keep_raw_ns RETURNING id`, t.String(), int64(rules.KeepRaw))
		if err != nil {
			return fmt.Errorf("archive: test type %s: %w", t, err)
		}
		a.typeID[t], a.periods[t], a.keepRaw[t] = id, rules.Periods, rules.KeepRaw
		a.charID[t] = map[string]int64{}
		for _, ch := range t.Characteristics() {
			cid, err := upsertID(ctx, tx, `INSERT INTO characteristics (test_type_id, name, unit, metric) VALUES (?, ?, ?, ?)
				ON CONFLICT (test_type_id, name) DO UPDATE SET unit = excluded.unit, metric = excluded.metric RETURNING id`,
				id, ch.Name, ch.Unit.String(), ch.Metric)
			if err != nil {
				return fmt.Errorf("archive: characteristic %s: %w", ch.Name, err)
			}
			a.charID[t][ch.Name] = cid
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM aggregation_rules WHERE test_type_id = ?`, id); err != nil {
			return err
		}
		for _, p := range rules.Periods {
			if _, err := tx.ExecContext(ctx, `INSERT INTO aggregation_rules (test_type_id, period_ns) VALUES (?, ?)`, id, int64(p)); err != nil {
				return err
			}
		}
	}
	for _, t := range c.Tests {
		id, err := upsertID(ctx, tx, `INSERT INTO instances (name, test_type_id, class, source, destination, params) VALUES (?, ?, ?, ?, ?, ?)
			ON CONFLICT (name) DO UPDATE SET test_type_id = excluded.test_type_id, class = excluded.class,
			source = excluded.source, destination = excluded.destination, params = excluded.params RETURNING id`,
			t.Name, a.typeID[t.Type], t.Class.String(), t.From, t.To, t.Params.describe(t.Type))
		if err != nil {
			return fmt.Errorf("archive: instance %s: %w", t.Name, err)
		}
		a.instID[t.Name] = id
	}
	return tx.Commit()
}

func upsertID(ctx context.Context, tx *sql.Tx, q string, args ...any) (int64, error) {
	var id int64
	err := tx.QueryRowContext(ctx, q, args...).Scan(&id)
	return id, err
}

// Run is one run of a test instance, as archived.
type Run struct {
	ID        int64
	Instance  string
	Scheduled time.Time
	Start     time.Time // zero when not started
	End       time.Time
	State     RunState
	Error     string
	Values    map[string]float64 // by characteristic
}

// AddRun stores a run and its values in one transaction: after a crash the
// archive holds it whole or not at all.
func (a *Archive) AddRun(ctx context.Context, t *Test, r *Run) error {
	inst, ok := a.instID[t.Name]
	if !ok {
		return fmt.Errorf("archive: unknown instance %s", t.Name)
	}
	tx, err := a.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("archive run of %s: %w", t.Name, err)
	}
	defer tx.Rollback()
	var start, end sql.NullInt64
	if !r.Start.IsZero() {
		start = sql.NullInt64{Int64: r.Start.UnixNano(), Valid: true}
		end = sql.NullInt64{Int64: r.End.UnixNano(), Valid: true}
	}
	res, err := tx.ExecContext(ctx, `INSERT INTO runs (instance_id, scheduled_ns, start_ns, end_ns, state, error) VALUES (?, ?, ?, ?, ?, ?)`,
		inst, r.Scheduled.UnixNano(), start, end, r.State.String(), r.Error)
	if err != nil {
		return fmt.Errorf("archive run of %s: %w", t.Name, err)
	}
	if r.ID, err = res.LastInsertId(); err != nil {
		return err
	}
	if len(r.Values) > 0 {
		st, err := tx.PrepareContext(ctx, `INSERT INTO mvalues (run_id, instance_id, characteristic_id, t_ns, value) VALUES (?, ?, ?, ?, ?)`)
		if err != nil {
			return err
		}
		defer st.Close()
		for name, v := range r.Values {
			cid, ok := a.charID[t.Type][name]
			if !ok {
				return fmt.Errorf("archive run of %s: %s has no characteristic %q", t.Name, t.Type, name)
			}
			if _, err := st.ExecContext(ctx, r.ID, inst, cid, r.Start.UnixNano(), v); err != nil {
				return fmt.Errorf("archive run of %s: %w", t.Name, err)
			}
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("archive run of %s: %w", t.Name, err)
	}
	return nil
}

// RunFilter selects runs; zero fields select all.
type RunFilter struct {
	Instance string
	From, To time.Time
	Limit    int // 0: no limit
}

// Runs returns archived runs, oldest first, with their raw values where
// retention kept them.
func (a *Archive) Runs(ctx context.Context, f RunFilter) ([]Run, error) {
	q := `SELECT r.id, i.name, r.scheduled_ns, r.start_ns, r.end_ns, r.state, r.error
		FROM runs r JOIN instances i ON i.id = r.instance_id
		WHERE (? = '' OR i.name = ?) AND r.scheduled_ns >= ? AND r.scheduled_ns < ?
		ORDER BY r.scheduled_ns, r.id LIMIT ?`
	from, to := int64(0), int64(1<<63-1)
	if !f.From.IsZero() {
		from = f.From.UnixNano()
	}
	if !f.To.IsZero() {
		to = f.To.UnixNano()
	}
	limit := int64(f.Limit)
	if limit <= 0 {
		limit = -1
	}
	rows, err := a.db.QueryContext(ctx, q, f.Instance, f.Instance, from, to, limit)
	if err != nil {
		return nil, fmt.Errorf("read runs: %w", err)
	}
	defer rows.Close()
	var out []Run
	byID := map[int64]int{}
	for rows.Next() {
		var r Run
		var sched int64
		var start, end sql.NullInt64
		var state string
		if err := rows.Scan(&r.ID, &r.Instance, &sched, &start, &end, &state, &r.Error); err != nil {
			return nil, err
		}
		r.Scheduled = time.Unix(0, sched)
		if start.Valid {
			r.Start, r.End = time.Unix(0, start.Int64), time.Unix(0, end.Int64)
		}
		if r.State, err = ParseRunState(state); err != nil {
			return nil, err
		}
		byID[r.ID] = len(out)
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return out, nil
	}
	lo, hi := idRange(out)
	vals, err := a.db.QueryContext(ctx, `SELECT m.run_id, c.name, m.value FROM mvalues m
		JOIN characteristics c ON c.id = m.characteristic_id WHERE m.run_id BETWEEN ? AND ?`, lo, hi)
	if err != nil {
		return nil, fmt.Errorf("read values: %w", err)
	}
	defer vals.Close()
	for vals.Next() {
		var id int64
		var name string
		var v float64
		if err := vals.Scan(&id, &name, &v); err != nil {
			return nil, err
		}
		if i, ok := byID[id]; ok {
			if out[i].Values == nil {
				out[i].Values = map[string]float64{}
			}
			out[i].Values[name] = v
		}
	}
	return out, vals.Err()
}

// idRange is the least and greatest id of rs: runs come in order of
// schedule, not of id.
func idRange(rs []Run) (lo, hi int64) {
	lo, hi = rs[0].ID, rs[0].ID
	for _, r := range rs {
		lo, hi = min(lo, r.ID), max(hi, r.ID)
	}
	return lo, hi
}

// Point is one value of a series at time T; an aggregate's Value is its
// mean and Count how many raw values it stands for.
type Point struct {
	T                   time.Time
	Value               float64
	Count               int
	Min, Max, P95       float64
	FromAggregate       bool
	AggregationPeriodNs int64
}

// Limits of what one series query may ask.
const (
	maxSeriesPoints = 20000
)

// Raw returns the raw values of instance's characteristic in [from, to).
func (a *Archive) Raw(ctx context.Context, instance, char string, from, to time.Time) ([]Point, error) {
	rows, err := a.db.QueryContext(ctx, `SELECT m.t_ns, m.value FROM mvalues m
		JOIN instances i ON i.id = m.instance_id JOIN characteristics c ON c.id = m.characteristic_id
		WHERE i.name = ? AND c.name = ? AND c.test_type_id = i.test_type_id AND m.t_ns >= ? AND m.t_ns < ?
		ORDER BY m.t_ns LIMIT ?`, instance, char, from.UnixNano(), to.UnixNano(), maxSeriesPoints)
	if err != nil {
		return nil, fmt.Errorf("read %s %s: %w", instance, char, err)
	}
	defer rows.Close()
	var out []Point
	for rows.Next() {
		var t int64
		var v float64
		if err := rows.Scan(&t, &v); err != nil {
			return nil, err
		}
		out = append(out, Point{T: time.Unix(0, t), Value: v, Count: 1, Min: v, Max: v, P95: v})
	}
	return out, rows.Err()
}

// Aggregated returns the aggregates of one period of instance's
// characteristic with buckets starting in [from, to).
func (a *Archive) Aggregated(ctx context.Context, instance, char string, period time.Duration, from, to time.Time) ([]Point, error) {
	rows, err := a.db.QueryContext(ctx, `SELECT g.t_ns, g.count, g.min, g.mean, g.max, g.p95 FROM aggregations g
		JOIN instances i ON i.id = g.instance_id JOIN characteristics c ON c.id = g.characteristic_id
		WHERE i.name = ? AND c.name = ? AND c.test_type_id = i.test_type_id AND g.period_ns = ? AND g.t_ns >= ? AND g.t_ns < ?
		ORDER BY g.t_ns LIMIT ?`, instance, char, int64(period), from.UnixNano(), to.UnixNano(), maxSeriesPoints)
	if err != nil {
		return nil, fmt.Errorf("read aggregates of %s %s: %w", instance, char, err)
	}
	defer rows.Close()
	var out []Point
	for rows.Next() {
		var t int64
		var p Point
		if err := rows.Scan(&t, &p.Count, &p.Min, &p.Value, &p.Max, &p.P95); err != nil {
			return nil, err
		}
		p.T, p.FromAggregate, p.AggregationPeriodNs = time.Unix(0, t), true, int64(period)
		out = append(out, p)
	}
	return out, rows.Err()
}

// Instance is an archived test instance.
type Instance struct {
	Name, Source, Destination string
	Type                      TestType
	Class                     Class
	Params                    string
	LastRun                   time.Time
	LastState                 string
	Runs                      int
}

// Instances lists the archived instances of type t, or of every type with
// all.
func (a *Archive) Instances(ctx context.Context, t TestType, all bool) ([]Instance, error) {
	rows, err := a.db.QueryContext(ctx, `SELECT i.name, i.source, i.destination, tt.name, i.class, i.params,
		(SELECT max(r.scheduled_ns) FROM runs r WHERE r.instance_id = i.id),
		(SELECT r.state FROM runs r WHERE r.instance_id = i.id ORDER BY r.scheduled_ns DESC LIMIT 1),
		(SELECT count(*) FROM runs r WHERE r.instance_id = i.id)
		FROM instances i JOIN test_types tt ON tt.id = i.test_type_id
		WHERE ? OR tt.name = ? ORDER BY i.name`, all, t.String())
	if err != nil {
		return nil, fmt.Errorf("read instances: %w", err)
	}
	defer rows.Close()
	var out []Instance
	for rows.Next() {
		var in Instance
		var tn, cl string
		var last sql.NullInt64
		var state sql.NullString
		if err := rows.Scan(&in.Name, &in.Source, &in.Destination, &tn, &cl, &in.Params, &last, &state, &in.Runs); err != nil {
			return nil, err
		}
		if in.Type, err = ParseTestType(tn); err != nil {
			return nil, err
		}
		if in.Class, err = ParseClass(cl); err != nil {
			return nil, err
		}
		if last.Valid {
			in.LastRun = time.Unix(0, last.Int64)
		}
		in.LastState = state.String
		out = append(out, in)
	}
	return out, rows.Err()
}

// Latest returns each instance's most recent value of each characteristic
// still held raw, for /metrics after a restart.
func (a *Archive) Latest(ctx context.Context) (map[string]map[string]float64, error) {
	rows, err := a.db.QueryContext(ctx, `SELECT i.name, c.name, m.value FROM mvalues m
		JOIN instances i ON i.id = m.instance_id JOIN characteristics c ON c.id = m.characteristic_id
		WHERE m.t_ns = (SELECT max(t_ns) FROM mvalues m2 WHERE m2.instance_id = m.instance_id AND m2.characteristic_id = m.characteristic_id)`)
	if err != nil {
		return nil, fmt.Errorf("read latest values: %w", err)
	}
	defer rows.Close()
	out := map[string]map[string]float64{}
	for rows.Next() {
		var in, ch string
		var v float64
		if err := rows.Scan(&in, &ch, &v); err != nil {
			return nil, err
		}
		if out[in] == nil {
			out[in] = map[string]float64{}
		}
		out[in][ch] = v
	}
	return out, rows.Err()
}

// errNoData is returned by queries that found nothing to show.
var errNoData = errors.New("no data")
