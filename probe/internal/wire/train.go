package wire

import (
	"time"

	"github.com/probe-dev/probe/collector/dump"
)

// TrainSpec asks for one train.
type TrainSpec struct {
	ID   uint32        `msgpack:"id"`
	N    int           `msgpack:"n"`    // packets
	Size int           `msgpack:"size"` // IP bytes per packet, headers included
	At   time.Duration `msgpack:"at"`   // when to send it, from the batch's start
}

// RecvTrain is what a receiver saw of one train.
type RecvTrain struct {
	ID   uint32        `msgpack:"id"`
	Rx   []dump.Stamps `msgpack:"rx"` // by index; zero: lost
	Dups int           `msgpack:"dups,omitempty"`
}
