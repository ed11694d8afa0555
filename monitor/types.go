// Package monitor runs tests on schedules between this host and agents,
// keeps every result in an archive with aggregates and retention deadlines,
// and serves them to Prometheus and as web graphs.
package monitor

import "fmt"

// TestType is what a test instance measures.
type TestType uint8

// Test types.
const (
	TypeEcho     TestType = iota // latency, loss, jitter over UDP echo
	TypeCapacity                 // bottleneck capacity by packet trains
	TypeTCP                      // TCP throughput
	TypeQUIC                     // QUIC throughput
	TypeLink                     // link load from an agent's interface counters
	numTypes
)

var typeNames = [numTypes]string{"echo", "capacity", "tcp", "quic", "link"}

func (t TestType) String() string {
	if t < numTypes {
		return typeNames[t]
	}
	return fmt.Sprintf("type(%d)", uint8(t))
}

// ParseTestType reads a type's name; "latency-loss-jitter" is echo.
func ParseTestType(s string) (TestType, error) {
	if s == "latency-loss-jitter" {
		return TypeEcho, nil
	}
	for i, n := range typeNames {
		if n == s {
			return TestType(i), nil
		}
	}
	return 0, fmt.Errorf("unknown test type %q: want echo, capacity, tcp, quic or link", s)
}

// Types lists every test type.
func Types() []TestType {
	out := make([]TestType, numTypes)
	for i := range out {
		out[i] = TestType(i)
	}
	return out
}

// Class says which tests may run at the same time, as pScheduler's do.
type Class uint8

// Classes.
const (
	// Exclusive tests (throughput, capacity) run with no other exclusive or
	// normal test on a shared end point.
	Exclusive Class = iota
	// Normal tests (latency) avoid exclusive ones but run beside each other.
	Normal
	// Background tests run any time.
	Background
	numClasses
)

var classNames = [numClasses]string{"exclusive", "normal", "background"}

func (c Class) String() string {
	if c < numClasses {
		return classNames[c]
	}
	return fmt.Sprintf("class(%d)", uint8(c))
}

// ParseClass reads a class's name.
func ParseClass(s string) (Class, error) {
	for i, n := range classNames {
		if n == s {
			return Class(i), nil
		}
	}
	return 0, fmt.Errorf("unknown class %q: want exclusive, normal or background", s)
}

// DefaultClass is a type's class unless the config says otherwise.
func (t TestType) DefaultClass() Class {
	switch t {
	case TypeEcho:
		return Normal
	case TypeLink:
		return Background
	}
	return Exclusive
}

// RunState is how a run ended.
type RunState uint8

// Run states.
const (
	Finished   RunState = iota // it ran and measured
	Failed                     // it started and ended in an error
	NotStarted                 // no slot in its slip window, or the monitor stopped first
	numStates
)

var stateNames = [numStates]string{"finished", "failed", "not_started"}

func (s RunState) String() string {
	if s < numStates {
		return stateNames[s]
	}
	return fmt.Sprintf("state(%d)", uint8(s))
}

// ParseRunState reads a state's name.
func ParseRunState(s string) (RunState, error) {
	for i, n := range stateNames {
		if n == s {
			return RunState(i), nil
		}
	}
	return 0, fmt.Errorf("unknown run state %q", s)
}

// Unit is a characteristic's base unit.
type Unit uint8

// Units, all base units as Prometheus wants them.
const (
	Seconds Unit = iota
	Ratio
	BitsPerSecond
	Count
	numUnits
)

var unitNames = [numUnits]string{"seconds", "ratio", "bits_per_second", "count"}

func (u Unit) String() string {
	if u < numUnits {
		return unitNames[u]
	}
	return fmt.Sprintf("unit(%d)", uint8(u))
}

// Characteristic is one figure a test type measures.
type Characteristic struct {
	Name   string // in the archive and the web pages
	Unit   Unit
	Metric string // Prometheus name, snake_case with the unit
	Help   string
}

// characteristics of each type; a run stores a value for each it could
// measure.
var characteristics = [numTypes][]Characteristic{
	TypeEcho: {
		{"rtt", Seconds, "probe_rtt_seconds", "Median round-trip time, kernel timestamps, the agent's turnaround subtracted."},
		{"rtt_min", Seconds, "probe_rtt_min_seconds", "Least round-trip time of the run."},
		{"jitter", Seconds, "probe_jitter_seconds", "RFC 3550 jitter of the round-trip time."},
		{"loss", Ratio, "probe_loss_ratio", "Probes without a reply over probes sent."},
	},
	TypeCapacity: {
		{"capacity", BitsPerSecond, "probe_capacity_bits_per_second", "Bottleneck capacity at the IP layer, by packet-train dispersion."},
		{"sustained", BitsPerSecond, "probe_sustained_rate_bits_per_second", "Sustained rate of long trains (ADR); 0 when the run had none."},
	},
	TypeTCP: {
		{"throughput", BitsPerSecond, "probe_tcp_throughput_bits_per_second", "TCP payload bits per second the receiver read."},
		{"retransmits", Count, "probe_tcp_retransmits", "Segments the sender retransmitted during the run."},
	},
	TypeQUIC: {
		{"throughput", BitsPerSecond, "probe_quic_throughput_bits_per_second", "QUIC stream bits per second the receiver read."},
		{"loss", Ratio, "probe_quic_packet_loss_ratio", "Packets the sender declared lost over packets sent."},
	},
	TypeLink: {
		{"rx", BitsPerSecond, "probe_link_receive_bits_per_second", "Bits per second the agent's interface received."},
		{"tx", BitsPerSecond, "probe_link_transmit_bits_per_second", "Bits per second the agent's interface sent."},
	},
}

// Characteristics are what a type measures.
func (t TestType) Characteristics() []Characteristic {
	if t < numTypes {
		return characteristics[t]
	}
	return nil
}

// Characteristic returns the type's characteristic called name.
func (t TestType) Characteristic(name string) (Characteristic, bool) {
	for _, c := range t.Characteristics() {
		if c.Name == name {
			return c, true
		}
	}
	return Characteristic{}, false
}
