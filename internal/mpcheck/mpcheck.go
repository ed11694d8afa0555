// Package mpcheck checks msgpack bytes from outside before they are decoded.
//
// The msgpack library allocates what a length header declares: an array32
// header that promises 2^32-1 elements makes it ask for that many at once,
// which ends the process with an out-of-memory fatal error that recover
// cannot catch. Every element, key, string byte or extension byte takes at
// least one byte of input, so a value whose declared lengths, added up, never
// exceed the bytes that follow them cannot make the decoder allocate more than
// a fixed multiple of its own size. Valid checks exactly that, in the spirit
// of crypto/tls's cryptobyte: a length is believed only once the bytes it
// claims are there.
package mpcheck

import (
	"bufio"
	"errors"
	"fmt"
	"io"
)

// MaxDepth bounds the nesting of arrays and maps. Our messages nest a few
// levels deep; a deeper value is hostile and would only cost the decoder's
// recursion stack.
const MaxDepth = 32

// ErrInvalid is the error of every check that fails.
var ErrInvalid = errors.New("invalid msgpack")

// form is what a value's type byte says about the bytes that follow it: a
// length field of field bytes (then extra bytes, an extension's type,
// before the data), whose length counts raw bytes (per 0), child values
// (per 1) or key-value pairs (per 2); or, with no field, fixed counts.
type form struct {
	field, extra int
	per          uint64
	raw          uint64
	children     uint64
}

func formOf(c byte) (form, bool) {
	switch {
	case c <= 0x7f || c >= 0xe0: // fixints
		return form{}, true
	case c <= 0x8f:
		return form{children: 2 * uint64(c&0x0f)}, true
	case c <= 0x9f:
		return form{children: uint64(c & 0x0f)}, true
	case c <= 0xbf:
		return form{raw: uint64(c & 0x1f)}, true
	}
	switch c {
	case 0xc0, 0xc2, 0xc3: // nil, false, true
		return form{}, true
	case 0xcc, 0xd0:
		return form{raw: 1}, true
	case 0xcd, 0xd1:
		return form{raw: 2}, true
	case 0xca, 0xce, 0xd2:
		return form{raw: 4}, true
	case 0xcb, 0xcf, 0xd3:
		return form{raw: 8}, true
	case 0xd4, 0xd5, 0xd6, 0xd7, 0xd8: // fixext 1..16: a type byte, then data
		return form{extra: 1, raw: 1 << (c - 0xd4)}, true
	case 0xc4, 0xd9: // bin8, str8
		return form{field: 1}, true
	case 0xc5, 0xda:
		return form{field: 2}, true
	case 0xc6, 0xdb:
		return form{field: 4}, true
	case 0xc7, 0xc8, 0xc9: // ext 8, 16, 32
		return form{field: 1 << (c - 0xc7), extra: 1}, true
	case 0xdc:
		return form{field: 2, per: 1}, true
	case 0xdd:
		return form{field: 4, per: 1}, true
	case 0xde:
		return form{field: 2, per: 2}, true
	case 0xdf:
		return form{field: 4, per: 2}, true
	}
	return form{}, false // 0xc1: never used
}

// withLength fills in the declared length n read from the length field.
func (f form) withLength(n uint64) form {
	if f.per == 0 {
		f.raw = n
	} else {
		f.children = f.per * n
	}
	return f
}

// walker follows the values still owed: stack holds, per open array or map,
// how many children it has yet to start; pending is their sum, which may
// never exceed the bytes left, since each child takes at least one.
type walker struct {
	stack   [MaxDepth]uint64
	depth   int
	pending uint64
}

// value accounts for a value of form f whose header has been read; left is
// the bytes after its header, or -1 when unknown (a stream). When it
// returns, depth is 0 if the outermost value is complete.
func (w *walker) value(f form, left int64) error {
	if left >= 0 && f.raw > uint64(left) {
		return fmt.Errorf("%w: %d bytes declared, %d left", ErrInvalid, f.raw, left)
	}
	if w.depth > 0 {
		w.stack[w.depth-1]--
		w.pending--
	}
	if f.children > 0 {
		if left >= 0 && w.pending+f.children > uint64(left) {
			return fmt.Errorf("%w: %d values declared, %d bytes left for them", ErrInvalid, w.pending+f.children, left)
		}
		if w.depth == MaxDepth {
			return fmt.Errorf("%w: nested deeper than %d", ErrInvalid, MaxDepth)
		}
		w.stack[w.depth] = f.children
		w.depth++
		w.pending += f.children
		return nil
	}
	for w.depth > 0 && w.stack[w.depth-1] == 0 {
		w.depth--
	}
	return nil
}

// Valid checks that b holds exactly one msgpack value whose every declared
// length fits in the bytes that follow it, nested at most MaxDepth deep.
func Valid(b []byte) error {
	var w walker
	i := 0
	for {
		if i >= len(b) {
			return fmt.Errorf("%w: value cut short at byte %d", ErrInvalid, i)
		}
		at := i
		f, ok := formOf(b[i])
		if !ok {
			return fmt.Errorf("%w: type byte %#x at byte %d", ErrInvalid, b[i], at)
		}
		i++
		if f.field > 0 {
			if f.field > len(b)-i {
				return fmt.Errorf("%w: length field cut short at byte %d", ErrInvalid, at)
			}
			f = f.withLength(be(b[i : i+f.field]))
			i += f.field
		}
		if f.extra > len(b)-i {
			return fmt.Errorf("%w: extension type cut short at byte %d", ErrInvalid, at)
		}
		i += f.extra
		if err := w.value(f, int64(len(b)-i)); err != nil {
			return fmt.Errorf("value at byte %d: %w", at, err)
		}
		i += int(f.raw)
		if w.depth == 0 {
			break
		}
	}
	if i != len(b) {
		return fmt.Errorf("%w: %d bytes after the value", ErrInvalid, len(b)-i)
	}
	return nil
}

func be(b []byte) uint64 {
	var v uint64
	for _, x := range b {
		v = v<<8 | uint64(x)
	}
	return v
}

// ReadValue appends one msgpack value read from br to dst and returns it.
// Nothing is allocated from a declared length: dst grows with the bytes
// actually read, so a header that promises more than the stream holds ends
// in io.ErrUnexpectedEOF, and a value longer than limit bytes is refused. At
// a clean end of the stream, before the value's first byte, it returns
// io.EOF. What it returns passes Valid.
func ReadValue(br *bufio.Reader, dst []byte, limit int) ([]byte, error) {
	var w walker
	start := len(dst)
	for {
		c, err := br.ReadByte()
		if err != nil {
			if errors.Is(err, io.EOF) && len(dst) > start {
				err = io.ErrUnexpectedEOF
			}
			return dst, err
		}
		dst = append(dst, c)
		f, ok := formOf(c)
		if !ok {
			return dst, fmt.Errorf("%w: type byte %#x", ErrInvalid, c)
		}
		if f.field > 0 {
			n := len(dst)
			if dst, err = copyN(br, dst, f.field); err != nil {
				return dst, err
			}
			f = f.withLength(be(dst[n:]))
		}
		if dst, err = copyN(br, dst, f.extra); err != nil {
			return dst, err
		}
		if err := w.value(f, -1); err != nil {
			return dst, err
		}
		if room := limit - (len(dst) - start); room < 0 || f.raw > uint64(room) {
			return dst, fmt.Errorf("%w: value longer than %d bytes", ErrInvalid, limit)
		}
		if dst, err = copyN(br, dst, int(f.raw)); err != nil {
			return dst, err
		}
		if w.depth == 0 {
			return dst, nil
		}
	}
}

// copyN appends n bytes of br to dst, growing it only as bytes arrive.
func copyN(br *bufio.Reader, dst []byte, n int) ([]byte, error) {
	for n > 0 {
		b, err := br.Peek(min(n, br.Size()))
		dst = append(dst, b...)
		br.Discard(len(b))
		n -= len(b)
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return dst, err
		}
	}
	return dst, nil
}
