package bpf

// Byte layout of struct probe_event (probe.c) in a ring buffer record, as
// the collector decodes it by hand to avoid an allocation per event. All
// fields are little-endian. layout_test.go checks these against the BTF of
// the compiled object and the generated ProbeProbeEvent.
const (
	ProbeEventSize    = 32
	ProbeEventTs      = 0
	ProbeEventSession = 8
	ProbeEventSeq     = 12
	ProbeEventIfindex = 16
	ProbeEventIPLen   = 20
	ProbeEventIndex   = 22
	ProbeEventDir     = 24
	ProbeEventKind    = 25
	ProbeEventFlags   = 26
)
