package dump

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/vmihailenco/msgpack/v5"
)

// A dump is a msgpack stream: one Header, then Records until the end. Each
// record is written as soon as it is known, so a dump cut short (Ctrl-C, a
// crash) still holds everything before the cut.
const (
	Format  = "probe-dump"
	Version = 1
)

// Header starts a dump.
type Header struct {
	Format  string            `msgpack:"format"`
	Version int               `msgpack:"version"`
	Mode    string            `msgpack:"mode"`
	Created time.Time         `msgpack:"created"`
	Meta    map[string]string `msgpack:"meta,omitempty"` // free-form: host, parameters
}

// Record is one entry of a dump: exactly one field is set.
type Record struct {
	Echo *EchoRecord `msgpack:"echo,omitempty"`
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
	dec    *msgpack.Decoder
	header Header
	n      int
}

// NewReader reads and checks the header.
func NewReader(r io.Reader) (*Reader, error) {
	br := bufio.NewReader(r)
	dec := msgpack.NewDecoder(br) // reads br directly: it is an io.ByteScanner
	dr := &Reader{br: br, dec: dec}
	if err := decode(dec, &dr.header); err != nil {
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
// ErrTruncated when the dump ends inside a record.
func (r *Reader) Next() (*Record, error) {
	// A clean end has no byte left before the next record; EOF inside a
	// record is a cut.
	if _, err := r.br.Peek(1); errors.Is(err, io.EOF) {
		return nil, io.EOF
	}
	rec := new(Record)
	if err := decode(r.dec, rec); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, fmt.Errorf("%w after %d records", ErrTruncated, r.n)
		}
		return nil, fmt.Errorf("record %d: %w", r.n+1, err)
	}
	r.n++
	return rec, nil
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
