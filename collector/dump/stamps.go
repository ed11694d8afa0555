// Package dump holds the records that cross from the collector to the
// estimator, and their on-disk format.
package dump

import "fmt"

// Source says where a timestamp was taken (docs/design.md, "Time").
type Source uint8

const (
	SourceUser Source = iota // clock_gettime in user space after the syscall
	SourceSW                 // SO_TIMESTAMPING software, in the kernel
	SourceEBPF               // bpf_ktime_get_ns at TC ingress/egress
	SourceHW                 // the NIC
	NumSources
)

var sourceNames = [NumSources]string{"user", "sw", "ebpf", "hw"}

func (s Source) String() string {
	if s < NumSources {
		return sourceNames[s]
	}
	return fmt.Sprintf("source(%d)", uint8(s))
}

// ParseSource reads a source name as printed by String.
func ParseSource(name string) (Source, error) {
	for i, n := range sourceNames {
		if n == name {
			return Source(i), nil
		}
	}
	return 0, fmt.Errorf("unknown timestamp source %q (want hw, ebpf, sw or user)", name)
}

// Clock is the clock a timestamp was read from. Differences are only
// meaningful between two timestamps of the same source, hence the same clock.
type Clock uint8

const (
	ClockMonotonic Clock = iota // CLOCK_MONOTONIC
	ClockRealtime               // CLOCK_REALTIME
	ClockNIC                    // the NIC's own clock (raw hardware timestamp)
)

func (c Clock) String() string {
	switch c {
	case ClockMonotonic:
		return "monotonic"
	case ClockRealtime:
		return "realtime"
	case ClockNIC:
		return "nic"
	}
	return fmt.Sprintf("clock(%d)", uint8(c))
}

// Clock returns the clock that timestamps of this source are read from.
func (s Source) Clock() Clock {
	switch s {
	case SourceSW:
		return ClockRealtime
	case SourceHW:
		return ClockNIC
	}
	return ClockMonotonic
}

// Preference lists sources from best to worst.
var Preference = [NumSources]Source{SourceHW, SourceEBPF, SourceSW, SourceUser}

// Stamps holds one event's timestamps in nanoseconds, one per source; zero
// means the source gave none.
type Stamps [NumSources]int64

// Has reports whether the source gave a timestamp.
func (s *Stamps) Has(src Source) bool { return s[src] != 0 }
