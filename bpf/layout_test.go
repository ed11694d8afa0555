package bpf

import (
	"reflect"
	"testing"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"

	"github.com/probe-dev/probe/collector/dump"
)

// cStruct looks up a struct in the BTF of a compiled object.
func cStruct(t *testing.T, spec *ebpf.CollectionSpec, name string) *btf.Struct {
	t.Helper()
	var s *btf.Struct
	if err := spec.Types.TypeByName(name, &s); err != nil {
		t.Fatalf("struct %s in object BTF: %v", name, err)
	}
	return s
}

// checkGoMatchesC fails when a generated Go struct and the C struct it came
// from disagree on size or on the offset of any field, i.e. when someone
// changed the C without regenerating, or edited the generated Go.
func checkGoMatchesC(t *testing.T, spec *ebpf.CollectionSpec, cname string, goVal any) {
	t.Helper()
	c := cStruct(t, spec, cname)
	g := reflect.TypeOf(goVal)
	if uintptr(c.Size) != g.Size() {
		t.Errorf("struct %s: C size %d, Go %s size %d", cname, c.Size, g, g.Size())
	}
	var goFields []reflect.StructField
	for i := range g.NumField() {
		if f := g.Field(i); f.Name != "_" { // structs.HostLayout marker
			goFields = append(goFields, f)
		}
	}
	if len(goFields) != len(c.Members) {
		t.Fatalf("struct %s: C has %d fields, Go %s has %d", cname, len(c.Members), g, len(goFields))
	}
	for i, m := range c.Members {
		f := goFields[i]
		if off := m.Offset.Bytes(); uintptr(off) != f.Offset {
			t.Errorf("struct %s: field %s at C offset %d, Go %s.%s at %d", cname, m.Name, off, g, f.Name, f.Offset)
		}
		if sz, err := btf.Sizeof(m.Type); err != nil {
			t.Errorf("struct %s: size of field %s: %v", cname, m.Name, err)
		} else if uintptr(sz) != f.Type.Size() {
			t.Errorf("struct %s: field %s has C size %d, Go %s.%s size %d", cname, m.Name, sz, g, f.Name, f.Type.Size())
		}
	}
}

func TestLayoutMatchesC(t *testing.T) {
	probe, err := LoadProbe()
	if err != nil {
		t.Fatal(err)
	}
	sched, err := LoadSched()
	if err != nil {
		t.Fatal(err)
	}
	checkGoMatchesC(t, probe, "probe_event", ProbeProbeEvent{})
	checkGoMatchesC(t, probe, "session", ProbeSession{})
	checkGoMatchesC(t, probe, "probe_stats", ProbeProbeStats{})
	checkGoMatchesC(t, sched, "task_info", SchedTaskInfo{})
	checkGoMatchesC(t, sched, "sched_stats", SchedSchedStats{})
	checkGoMatchesC(t, sched, "thread_key", SchedThreadKey{})
	checkGoMatchesC(t, sched, "thread_entry", SchedThreadEntry{})
}

// TestProbeEventDecodeLayout checks the offsets the collector decodes at
// against the C struct, field by field.
func TestProbeEventDecodeLayout(t *testing.T) {
	spec, err := LoadProbe()
	if err != nil {
		t.Fatal(err)
	}
	c := cStruct(t, spec, "probe_event")
	if c.Size != ProbeEventSize {
		t.Errorf("probe_event: C size %d, ProbeEventSize %d", c.Size, ProbeEventSize)
	}
	want := map[string]struct {
		off  int
		size int
	}{
		"ts":      {ProbeEventTs, 8},
		"session": {ProbeEventSession, 4},
		"seq":     {ProbeEventSeq, 4},
		"ifindex": {ProbeEventIfindex, 4},
		"ip_len":  {ProbeEventIPLen, 2},
		"index":   {ProbeEventIndex, 2},
		"dir":     {ProbeEventDir, 1},
		"kind":    {ProbeEventKind, 1},
		"flags":   {ProbeEventFlags, 1},
	}
	seen := 0
	for _, m := range c.Members {
		w, ok := want[m.Name]
		if !ok {
			continue // padding
		}
		seen++
		sz, err := btf.Sizeof(m.Type)
		if err != nil {
			t.Fatal(err)
		}
		if int(m.Offset.Bytes()) != w.off || sz != w.size {
			t.Errorf("probe_event.%s: C offset %d size %d, decoded at offset %d size %d",
				m.Name, m.Offset.Bytes(), sz, w.off, w.size)
		}
	}
	if seen != len(want) {
		t.Errorf("probe_event: found %d of the %d decoded fields in C", seen, len(want))
	}
	// The generated Go struct must agree too, so that tests may use either.
	var e ProbeProbeEvent
	goOffs := map[string]uintptr{
		"ts": unsafe.Offsetof(e.Ts), "session": unsafe.Offsetof(e.Session),
		"seq": unsafe.Offsetof(e.Seq), "ifindex": unsafe.Offsetof(e.Ifindex),
		"ip_len": unsafe.Offsetof(e.IpLen), "index": unsafe.Offsetof(e.Index),
		"dir": unsafe.Offsetof(e.Dir), "kind": unsafe.Offsetof(e.Kind),
		"flags": unsafe.Offsetof(e.Flags),
	}
	for name, off := range goOffs {
		if int(off) != want[name].off {
			t.Errorf("ProbeProbeEvent field %s at %d, decoded at %d", name, off, want[name].off)
		}
	}
}

// TestRunQueueBuckets checks that the histogram's size is one figure: the
// C enum, the arrays of the generated structs, and the record format's.
func TestRunQueueBuckets(t *testing.T) {
	sched, err := LoadSched()
	if err != nil {
		t.Fatal(err)
	}
	var e *btf.Enum
	if err := sched.Types.TypeByName("sched_consts", &e); err != nil {
		t.Fatalf("enum sched_consts in object BTF: %v", err)
	}
	var c uint64
	for _, v := range e.Values {
		if v.Name == "RUNQ_BUCKETS" {
			c = v.Value
		}
	}
	var arr *btf.Array
	for _, m := range cStruct(t, sched, "sched_stats").Members {
		if m.Name == "runq" {
			arr, _ = m.Type.(*btf.Array)
		}
	}
	if arr == nil {
		t.Fatal("sched_stats.runq is not an array in BTF")
	}
	var g SchedSchedStats
	for what, n := range map[string]uint64{
		"the C array sched_stats.runq":      uint64(arr.Nelems),
		"SchedSchedConstsRUNQ_BUCKETS":      uint64(SchedSchedConstsRUNQ_BUCKETS),
		"the Go array SchedSchedStats.Runq": uint64(len(g.Runq)),
		"dump.RunQueueBuckets":              uint64(dump.RunQueueBuckets),
	} {
		if n != c || c == 0 {
			t.Errorf("%s has %d buckets, RUNQ_BUCKETS in sched.c %d", what, n, c)
		}
	}
}
