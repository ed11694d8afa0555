package wire

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/probe-dev/probe/internal/mpcheck"
)

// MaxFrame bounds a control frame's body, in both directions, so that a peer
// cannot make the other allocate at will. Bulk results travel in batches.
const MaxFrame = 1 << 20

// Decoding a frame allocates up to about twice the size of the largest
// element of its arrays per byte of the body (an empty map, one byte, becomes
// a whole record, and the library copies a slice once as it fills it): ~160
// bytes per byte for the agent's stamp records. So frames are smaller while
// less is known of the peer: before the handshake ends, both ways, and from a
// client to the agent, which asks for small things only (train specs, a
// command line).
const (
	MaxHandshakeFrame = 4 << 10
	MaxClientFrame    = 256 << 10
)

// ErrOversize and ErrMalformed are protocol faults: the agent tells the peer
// and hangs up.
var (
	ErrOversize  = errors.New("oversize frame")
	ErrMalformed = errors.New("malformed frame")
)

// Conn reads and writes length-prefixed msgpack frames: a 4-byte
// big-endian body length, then the body.
type Conn struct {
	r   *bufio.Reader
	w   *bufio.Writer
	buf []byte
	// Limit bounds the frames read: MaxHandshakeFrame until a welcome
	// passes, then MaxClientFrame on the agent, which writes it, and
	// MaxFrame on the client, which reads it.
	Limit uint32
}

// NewConn frames rw, with the handshake's limit.
func NewConn(rw io.ReadWriter) *Conn {
	return &Conn{r: bufio.NewReader(rw), w: bufio.NewWriter(rw), Limit: MaxHandshakeFrame}
}

// Reader is what reads rw, with what it has buffered: a switch to TLS must
// read those bytes first.
func (c *Conn) Reader() *bufio.Reader { return c.r }

// Read reads one frame, which must hold a known message.
func (c *Conn) Read() (*Message, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(c.r, hdr[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n > c.Limit {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrOversize, n, c.Limit)
	}
	body, err := readBody(c.r, c.buf[:0], int(n))
	c.buf = body[:0]
	if err != nil {
		return nil, fmt.Errorf("%w: body cut short: %w", ErrMalformed, err)
	}
	m, err := unmarshal(body)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	if m.Kind() == "" {
		return nil, fmt.Errorf("%w: no known message in it", ErrMalformed)
	}
	if m.Welcome != nil {
		c.Limit = MaxFrame
	}
	return m, nil
}

// bodyChunk is how much of a body is allocated ahead of the bytes that
// arrive: a 4-byte header alone may not make the reader allocate its
// declared length.
const bodyChunk = 32 << 10

// readBody appends n bytes of r to buf, growing it a chunk at a time as
// they come.
func readBody(r io.Reader, buf []byte, n int) ([]byte, error) {
	for len(buf) < n {
		k := min(n-len(buf), bodyChunk)
		buf = slices.Grow(buf, k)
		got, err := io.ReadFull(r, buf[len(buf):len(buf)+k])
		buf = buf[:len(buf)+got]
		if err != nil {
			return buf, err
		}
	}
	return buf, nil
}

// Write writes one frame and flushes it; a welcome raises the limit of
// what this end reads next to MaxClientFrame (the agent's).
func (c *Conn) Write(m *Message) error {
	body, err := msgpack.Marshal(m)
	if err != nil {
		return fmt.Errorf("encode %s: %w", m.Kind(), err)
	}
	if len(body) > MaxFrame {
		return fmt.Errorf("encode %s: %w: %d bytes, limit %d", m.Kind(), ErrOversize, len(body), MaxFrame)
	}
	var hdr [4]byte
	if m.Welcome != nil {
		c.Limit = MaxClientFrame
	}
	binary.BigEndian.PutUint32(hdr[:], uint32(len(body)))
	if _, err := c.w.Write(hdr[:]); err != nil {
		return err
	}
	if _, err := c.w.Write(body); err != nil {
		return err
	}
	return c.w.Flush()
}

// unmarshal decodes a frame body from the peer. The library allocates what
// a length header declares, so the body's lengths are checked against its
// own size first; and it panics on some malformed inputs, which a hostile
// frame must not turn into the agent's end.
func unmarshal(body []byte) (m *Message, err error) {
	if err := mpcheck.Valid(body); err != nil {
		return nil, err
	}
	defer func() {
		if p := recover(); p != nil {
			m, err = nil, fmt.Errorf("%v", p)
		}
	}()
	m = new(Message)
	return m, msgpack.Unmarshal(body, m)
}

// handshakeFrame holds only the messages of the handshake: before a client
// is authenticated the agent decodes nothing else, so that no other
// message's decoder faces a stranger (other keys are skipped unread).
type handshakeFrame struct {
	Hello *Hello `msgpack:"hello,omitempty"`
	Auth  *Auth  `msgpack:"auth,omitempty"`
}

// ReadHandshake reads one handshake frame, within the size limit; a frame
// without a handshake message is a nil Message.
func (fc *Conn) ReadHandshake() (*Message, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(fc.r, hdr[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n > fc.Limit {
		return nil, fmt.Errorf("%w: %d bytes, limit %d before authentication", ErrOversize, n, fc.Limit)
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(fc.r, body); err != nil {
		return nil, fmt.Errorf("%w: body cut short: %w", ErrMalformed, err)
	}
	// Declared lengths (a MAC's, a skipped array's) are checked against the
	// body before the library allocates them.
	if err := mpcheck.Valid(body); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	var h handshakeFrame
	if err := msgpack.Unmarshal(body, &h); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	if h.Hello == nil && h.Auth == nil {
		return nil, nil
	}
	return &Message{Hello: h.Hello, Auth: h.Auth}, nil
}
