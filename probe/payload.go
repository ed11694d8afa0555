package probe

import (
	"hash/crc32"

	"github.com/probe-dev/probe/collector"
)

// An echo probe's payload: the probe header, a CRC32C, then a filler that
// depends on the sequence number, so that a flipped bit anywhere (and a
// payload swapped between probes) fails the check. The CRC leaves out the
// kind and flags bytes, which the agent rewrites.
//
//	0  probe header (collector.ProbeHeaderLen bytes)
//	16 crc32c      u32, big-endian
//	20 filler
const (
	crcOffset   = collector.ProbeHeaderLen
	minEchoSize = crcOffset + 4
)

// flagCorrupt in a reply says the probe failed the agent's check.
const flagCorrupt = 1

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func probeCRC(b []byte) uint32 {
	c := crc32.Update(0, castagnoli, b[:12])
	c = crc32.Update(c, castagnoli, b[14:crcOffset])
	return crc32.Update(c, castagnoli, b[minEchoSize:])
}

// fillProbe writes a whole probe of len(b) bytes.
func fillProbe(b []byte, h collector.ProbeHeader) {
	h.Put(b)
	for i := minEchoSize; i < len(b); i++ {
		b[i] = byte(h.Seq*131 + uint32(i)*7)
	}
	putCRC(b)
}

func putCRC(b []byte) {
	c := probeCRC(b)
	b[crcOffset], b[crcOffset+1], b[crcOffset+2], b[crcOffset+3] = byte(c>>24), byte(c>>16), byte(c>>8), byte(c)
}

// probeIntact checks a probe's CRC.
func probeIntact(b []byte) bool {
	if len(b) < minEchoSize {
		return false
	}
	want := uint32(b[crcOffset])<<24 | uint32(b[crcOffset+1])<<16 | uint32(b[crcOffset+2])<<8 | uint32(b[crcOffset+3])
	return probeCRC(b) == want
}
