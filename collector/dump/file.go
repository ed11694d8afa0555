package dump

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/probe-dev/probe/internal/mpcheck"
	"github.com/vmihailenco/msgpack/v5"
)

// A dump is a msgpack stream: one Header, then Records until the end. Each
// record is written as soon as it is known, so a dump cut short (Ctrl-C, a
// crash) still holds everything before the cut.
const (
	Format  = "probe-dump"
	Version = 1
)

// Mode is what a dump holds.
type Mode string

const (
	ModeEcho     Mode = "echo"     // EchoPoints and EchoRecords
	ModeCapacity Mode = "capacity" // Trains and an End
)

// Header starts a dump.
type Header struct {
	Format  string            `msgpack:"format"`
	Version int               `msgpack:"version"`
	Mode    Mode              `msgpack:"mode"`
	Created time.Time         `msgpack:"created"`
	Meta    map[string]string `msgpack:"meta,omitempty"` // free-form: host, parameters
}

// Record is one entry of a dump: exactly one field is set. Trains are coded
// by hand, for speed; the rest by reflection.
type Record struct {
	Echo  *EchoRecord `msgpack:"echo,omitempty"`
	Point *EchoPoint  `msgpack:"point,omitempty"`
	Train *Train      `msgpack:"train,omitempty"`
	End   *End        `msgpack:"end,omitempty"`
}

// A record is written as [kind, value]; kind names the field that is set.
const (
	recordEcho  = 1
	recordTrain = 2
	recordEnd   = 3
	recordPoint = 4
)

// EncodeMsgpack implements msgpack.CustomEncoder.
func (r *Record) EncodeMsgpack(enc *msgpack.Encoder) error {
	var kind int
	var v any
	switch {
	case r.Echo != nil:
		kind, v = recordEcho, r.Echo
	case r.Train != nil:
		kind, v = recordTrain, r.Train
	case r.End != nil:
		kind, v = recordEnd, r.End
	case r.Point != nil:
		kind, v = recordPoint, r.Point
	default:
		return errors.New("empty dump record")
	}
	if err := enc.EncodeArrayLen(2); err != nil {
		return err
	}
	if err := enc.EncodeInt(int64(kind)); err != nil {
		return err
	}
	return enc.Encode(v)
}

// decodeRecord reads what Record.EncodeMsgpack wrote into r.rec.
func (r *Reader) decodeRecord() (err error) {
	defer func() {
		if p := recover(); p != nil { // the library panics on some damage
			err = fmt.Errorf("%w: %v", errWire, p)
		}
	}()
	w := &r.wire
	n, err := w.arrayLen()
	if err != nil {
		return err
	}
	if n != 2 {
		return fmt.Errorf("%w: record of %d values, want 2", errWire, n)
	}
	kind, err := w.int64()
	if err != nil {
		return err
	}
	r.rec = Record{}
	switch kind {
	case recordEcho:
		r.echo, r.rec.Echo = EchoRecord{}, &r.echo
		return r.decodeValue(&r.echo)
	case recordTrain:
		r.rec.Train = &r.train
		return w.train(&r.train)
	case recordEnd:
		r.end, r.rec.End = End{}, &r.end
		return r.decodeValue(&r.end)
	case recordPoint:
		r.point, r.rec.Point = EchoPoint{}, &r.point
		return r.decodeValue(&r.point)
	}
	return fmt.Errorf("%w: unknown record kind %d", errWire, kind)
}

// maxValue bounds a header or a record other than a train: they are small
// (an End holds a few warnings).
const maxValue = 1 << 20

// decodeValue reads the next msgpack value into v. The library allocates
// what a length header declares, so the value's bytes are read first, as
// they come (mpcheck.ReadValue allocates nothing from a declared length),
// and decoded from there.
func (r *Reader) decodeValue(v any) error {
	raw, err := mpcheck.ReadValue(r.br, r.raw[:0], maxValue)
	r.raw = raw[:0]
	if err != nil {
		if errors.Is(err, mpcheck.ErrInvalid) {
			return fmt.Errorf("%w: %w", errWire, err)
		}
		return err
	}
	r.src.Reset(raw)
	r.dec.Reset(&r.src)
	return decode(r.dec, v)
}

// ErrTruncated says the dump ends inside a record.
var ErrTruncated = errors.New("dump truncated")

// Writer appends records to a dump.
type Writer struct {
	bw  *bufio.Writer
	enc *msgpack.Encoder
}

// NewWriter writes h (with Format and Version filled in) to w.
func NewWriter(w io.Writer, h Header) (*Writer, error) {
	h.Format, h.Version = Format, Version
	bw := bufio.NewWriter(w)
	dw := &Writer{bw: bw, enc: msgpack.NewEncoder(bw)}
	if err := dw.enc.Encode(&h); err != nil {
		return nil, fmt.Errorf("write dump header: %w", err)
	}
	return dw, nil
}

// Write appends one record.
func (w *Writer) Write(r *Record) error {
	if err := w.enc.Encode(r); err != nil {
		return fmt.Errorf("write dump record: %w", err)
	}
	return nil
}

// Flush pushes buffered records to the underlying writer.
func (w *Writer) Flush() error { return w.bw.Flush() }

// Reader reads a dump.
type Reader struct {
	br     *bufio.Reader
	dec    *msgpack.Decoder // decodes raw, through src
	raw    []byte
	src    bytes.Reader
	wire   wireReader
	header Header
	n      int

	// Next hands these out, refilled on every call.
	rec   Record
	train Train
	echo  EchoRecord
	end   End
	point EchoPoint
}

// NewReader reads and checks the header.
func NewReader(r io.Reader) (*Reader, error) {
	br := bufio.NewReaderSize(r, 1<<20) // dumps are read in bulk
	dr := &Reader{br: br, dec: msgpack.NewDecoder(nil), wire: wireReader{br: br}}
	if err := dr.decodeValue(&dr.header); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, fmt.Errorf("not a probe dump: %w before the header ended", ErrTruncated)
		}
		return nil, fmt.Errorf("not a probe dump: %w", err)
	}
	if dr.header.Format != Format {
		return nil, fmt.Errorf("not a probe dump (format %q)", dr.header.Format)
	}
	if dr.header.Version != Version {
		return nil, fmt.Errorf("dump version %d, this build reads version %d", dr.header.Version, Version)
	}
	return dr, nil
}

// Header is the dump's header.
func (r *Reader) Header() Header { return r.header }

// Next returns the next record, io.EOF at a clean end, and an error wrapping
// ErrTruncated when the dump ends inside a record. The record and what it
// points to are valid until the next call: copy what you keep (the stamp
// slices of a train are not reused and may be kept).
func (r *Reader) Next() (*Record, error) {
	// A clean end has no byte left before the next record; EOF inside a
	// record is a cut.
	if _, err := r.br.Peek(1); errors.Is(err, io.EOF) {
		return nil, io.EOF
	}
	if err := r.decodeRecord(); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, fmt.Errorf("%w after %d records", ErrTruncated, r.n)
		}
		return nil, fmt.Errorf("record %d: %w", r.n+1, err)
	}
	r.n++
	return &r.rec, nil
}

// decode guards against the msgpack library's panics on some malformed
// inputs (found by FuzzReader): a damaged dump is an error, not a crash.
func decode(dec *msgpack.Decoder, v any) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("malformed record: %v", p)
		}
	}()
	return dec.Decode(v)
}
