package monitor

import "fmt"

// Overlap is two runs that the class rules should have kept apart.
type Overlap struct {
	A, B     string // test instances
	EndPoint string
	RunA     int64
	RunB     int64
}

func (o Overlap) String() string {
	return fmt.Sprintf("runs %d of %s and %d of %s overlapped on %s", o.RunA, o.A, o.RunB, o.B, o.EndPoint)
}

// Overlaps checks archived runs against the class rules: an exclusive run
// must not overlap in time another exclusive or a normal run sharing an
// end point. It reads only start and end times, as the archive has them.
func Overlaps(c *Config, runs []Run) []Overlap {
	tests := map[string]*Test{}
	for _, t := range c.Tests {
		tests[t.Name] = t
	}
	var started []Run
	for _, r := range runs {
		if !r.Start.IsZero() && tests[r.Instance] != nil {
			started = append(started, r)
		}
	}
	var out []Overlap
	for i, a := range started {
		ta := tests[a.Instance]
		for _, b := range started[i+1:] {
			tb := tests[b.Instance]
			if ta.Class != Exclusive && tb.Class != Exclusive || ta.Class == Background || tb.Class == Background {
				continue
			}
			if !a.Start.Before(b.End) || !b.Start.Before(a.End) {
				continue
			}
			if e := shared(ta, tb); e != "" {
				out = append(out, Overlap{A: a.Instance, B: b.Instance, EndPoint: e, RunA: a.ID, RunB: b.ID})
			}
		}
	}
	return out
}

func shared(a, b *Test) string {
	for _, x := range a.EndPoints() {
		for _, y := range b.EndPoints() {
			if x == y {
				return x
			}
		}
	}
	return ""
}
