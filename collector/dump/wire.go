package dump

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
)

// wireReader reads the few msgpack forms train records use (arrays and
// integers) straight from the buffered reader the msgpack decoder shares.
// Train records are nearly all of a large dump, and going through the
// library's generic decoding took most of estimate's time.
type wireReader struct {
	br   *bufio.Reader
	slab []Stamps // stamp lists are cut from it: one allocation for many trains
}

var errWire = errors.New("malformed record")

// slabPackets is the stamps allocated at once for many trains' lists.
const slabPackets = 4096

func (w *wireReader) byte() (byte, error) {
	b, err := w.br.ReadByte()
	if err != nil && errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF // inside a record
	}
	return b, err
}

func (w *wireReader) n(k int) (uint64, error) {
	b, err := w.br.Peek(k)
	if err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return 0, err
	}
	var v uint64
	switch k {
	case 1:
		v = uint64(b[0])
	case 2:
		v = uint64(binary.BigEndian.Uint16(b))
	case 4:
		v = uint64(binary.BigEndian.Uint32(b))
	case 8:
		v = binary.BigEndian.Uint64(b)
	}
	w.br.Discard(k)
	return v, nil
}

func (w *wireReader) arrayLen() (int, error) {
	c, err := w.byte()
	if err != nil {
		return 0, err
	}
	switch {
	case c >= 0x90 && c <= 0x9f:
		return int(c & 0x0f), nil
	case c == 0xdc:
		v, err := w.n(2)
		return int(v), err
	case c == 0xdd:
		v, err := w.n(4)
		return int(v), err
	}
	return 0, fmt.Errorf("%w: code %#x where an array was expected", errWire, c)
}

func (w *wireReader) int64() (int64, error) {
	c, err := w.byte()
	if err != nil {
		return 0, err
	}
	switch {
	case c <= 0x7f:
		return int64(c), nil
	case c >= 0xe0:
		return int64(int8(c)), nil
	}
	var size int
	signed := false
	switch c {
	case 0xcc, 0xcd, 0xce, 0xcf:
		size = 1 << (c - 0xcc)
	case 0xd0, 0xd1, 0xd2, 0xd3:
		size, signed = 1<<(c-0xd0), true
	default:
		return 0, fmt.Errorf("%w: code %#x where an integer was expected", errWire, c)
	}
	v, err := w.n(size)
	if err != nil {
		return 0, err
	}
	if !signed {
		if v > math.MaxInt64 {
			return 0, fmt.Errorf("%w: integer %d out of range", errWire, v)
		}
		return int64(v), nil
	}
	shift := 64 - 8*size
	return int64(v<<shift) >> shift, nil // sign-extend
}

// bounded reads an integer and checks it lies in [lo, hi].
func (w *wireReader) bounded(lo, hi int64, what string) (int64, error) {
	v, err := w.int64()
	if err == nil && (v < lo || v > hi) {
		err = fmt.Errorf("%w: %s %d outside %d..%d", errWire, what, v, lo, hi)
	}
	return v, err
}

// trainHead is the integers that start a train record, with their ranges.
var trainHead = [...]struct {
	what   string
	lo, hi int64
}{{"id", 0, math.MaxUint32}, {"phase", 0, math.MaxUint8}, {"size", math.MinInt32, math.MaxInt32}, {"dups", 0, math.MaxInt32}}

// train reads what Train.EncodeMsgpack wrote.
func (w *wireReader) train(t *Train) error {
	n, err := w.arrayLen()
	if err != nil {
		return err
	}
	if n != trainFields {
		return fmt.Errorf("%w: train record with %d fields, want %d", errWire, n, trainFields)
	}
	var f [len(trainHead)]int64
	for i, h := range trainHead {
		if f[i], err = w.bounded(h.lo, h.hi, h.what); err != nil {
			return err
		}
	}
	*t = Train{ID: uint32(f[0]), Phase: Phase(f[1]), Size: int(f[2]), Dups: int(f[3])}
	if t.Tx, err = w.stamps(); err != nil {
		return err
	}
	t.Rx, err = w.stamps()
	return err
}

func (w *wireReader) stamps() ([]Stamps, error) {
	n, err := w.arrayLen()
	if err != nil {
		return nil, err
	}
	if n < 1 {
		return nil, fmt.Errorf("%w: stamp list of %d values", errWire, n)
	}
	packets, err := w.bounded(0, min(maxStampPackets, int64(n-1)), "stamp list packets")
	if err != nil {
		return nil, err
	}
	left := n - 1 - int(packets)
	var s []Stamps
	if packets > 0 {
		// Each packet's mask takes a byte: believe the count only once
		// that many bytes are there (the buffer holds 1 MiB, more than
		// maxStampPackets).
		if _, err := w.br.Peek(int(packets)); err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
		if len(w.slab) < int(packets) {
			w.slab = make([]Stamps, max(slabPackets, packets))
		}
		s, w.slab = w.slab[:packets:packets], w.slab[packets:]
	}
	for i := range s {
		mask, err := w.bounded(0, 1<<NumSources-1, "stamp mask")
		if err != nil {
			return nil, err
		}
		for k := range NumSources {
			if mask&(1<<k) == 0 {
				continue
			}
			if left--; left < 0 {
				return nil, fmt.Errorf("%w: stamp list longer than its %d values", errWire, n)
			}
			if s[i][k], err = w.int64(); err != nil {
				return nil, err
			}
		}
	}
	if left != 0 {
		return nil, fmt.Errorf("%w: stamp list with %d values left over", errWire, left)
	}
	return s, nil
}
