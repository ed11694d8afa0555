package dump

import (
	"fmt"
	"time"

	"github.com/vmihailenco/msgpack/v5"
)

// Phase is the step of the capacity method (docs/capacity.md) a train belongs to.
type Phase uint8

const (
	PhaseCalibrate Phase = iota + 1 // noise floor
	PhaseMaxLen                     // longest train the path carries without loss
	PhasePrelim                     // preliminary trains, N = 3..10, full size
	PhaseOne                        // Phase I: short trains over ~40 packet sizes
	PhaseTwo                        // Phase II: long trains at the maximum length
)

var phaseNames = map[Phase]string{
	PhaseCalibrate: "calibrate", PhaseMaxLen: "max-length", PhasePrelim: "preliminary",
	PhaseOne: "phase-1", PhaseTwo: "phase-2",
}

func (p Phase) String() string {
	if n, ok := phaseNames[p]; ok {
		return n
	}
	return fmt.Sprintf("phase(%d)", uint8(p))
}

// Train is one packet train of a capacity measurement as both ends saw it.
// Packets are sent back to back; Rx is indexed like Tx, by position in the
// train, so a lost packet is a zero Stamps and a reordered one shows as
// timestamps out of index order.
type Train struct {
	ID    uint32   `msgpack:"id"`
	Phase Phase    `msgpack:"phase"`
	Size  int      `msgpack:"size"` // IP bytes per packet, IP and UDP headers included
	Tx    []Stamps `msgpack:"tx"`   // at the sender, one per packet sent
	Rx    []Stamps `msgpack:"rx"`   // at the receiver, one per packet sent
	Dups  int      `msgpack:"dups,omitempty"`
}

// Received counts the packets that arrived.
func (t *Train) Received() int {
	n := 0
	for i := range t.Rx {
		if t.Rx[i] != (Stamps{}) {
			n++
		}
	}
	return n
}

// End closes a dump whose run ended normally or was interrupted; a dump
// without it was cut short.
type End struct {
	Duration    time.Duration `msgpack:"duration"`
	Interrupted bool          `msgpack:"interrupted,omitempty"`
}

// Trains are the bulk of a dump (a million samples are millions of
// timestamps), so they are coded by hand, not by reflection: as an array
// [id, phase, size, dups, tx, rx]. A stamp list is one flat array: the packet
// count, then per packet a bit mask of the sources present and their values.
// Absent stamps cost nothing, and decoding is several times faster.
const trainFields = 6

// maxStampPackets bounds a decoded stamp list, so that a damaged length
// cannot make the reader allocate at will.
const maxStampPackets = 1 << 16

// EncodeMsgpack implements msgpack.CustomEncoder.
func (t *Train) EncodeMsgpack(enc *msgpack.Encoder) error {
	for _, err := range []error{
		enc.EncodeArrayLen(trainFields), enc.EncodeUint(uint64(t.ID)), enc.EncodeUint(uint64(t.Phase)),
		enc.EncodeInt(int64(t.Size)), enc.EncodeInt(int64(t.Dups)),
	} {
		if err != nil {
			return err
		}
	}
	if err := encodeStamps(enc, t.Tx); err != nil {
		return err
	}
	return encodeStamps(enc, t.Rx)
}

func encodeStamps(enc *msgpack.Encoder, s []Stamps) error {
	n := 1 + len(s)
	for i := range s {
		for _, v := range s[i] {
			if v != 0 {
				n++
			}
		}
	}
	if err := enc.EncodeArrayLen(n); err != nil {
		return err
	}
	if err := enc.EncodeInt(int64(len(s))); err != nil {
		return err
	}
	for i := range s {
		var mask uint64
		for k, v := range s[i] {
			if v != 0 {
				mask |= 1 << k
			}
		}
		if err := enc.EncodeUint(mask); err != nil {
			return err
		}
		for _, v := range s[i] {
			if v == 0 {
				continue
			}
			if err := enc.EncodeInt(v); err != nil {
				return err
			}
		}
	}
	return nil
}
