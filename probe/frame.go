package probe

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"

	"github.com/probe-dev/probe/internal/mpcheck"
	"github.com/vmihailenco/msgpack/v5"
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
	maxHandshakeFrame = 4 << 10
	maxClientFrame    = 256 << 10
)

// errOversize and errMalformed are protocol faults: the agent tells the peer
// and hangs up.
var (
	errOversize  = errors.New("oversize frame")
	errMalformed = errors.New("malformed frame")
)

// frameConn reads and writes length-prefixed msgpack frames: a 4-byte
// big-endian body length, then the body.
type frameConn struct {
	r   *bufio.Reader
	w   *bufio.Writer
	buf []byte
	// limit bounds the frames read: maxHandshakeFrame until a welcome
	// passes, then maxClientFrame on the agent, which writes it, and
	// MaxFrame on the client, which reads it.
	limit uint32
}

func newFrameConn(rw io.ReadWriter) *frameConn {
	return &frameConn{r: bufio.NewReader(rw), w: bufio.NewWriter(rw), limit: maxHandshakeFrame}
}

func (c *frameConn) read() (*Message, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(c.r, hdr[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n > c.limit {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", errOversize, n, c.limit)
	}
	body, err := readBody(c.r, c.buf[:0], int(n))
	c.buf = body[:0]
	if err != nil {
		return nil, fmt.Errorf("%w: body cut short: %w", errMalformed, err)
	}
	m, err := unmarshal(body)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errMalformed, err)
	}
	if m.kind() == "" {
		return nil, fmt.Errorf("%w: no known message in it", errMalformed)
	}
	if m.Welcome != nil {
		c.limit = MaxFrame
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

func (c *frameConn) write(m *Message) error {
	body, err := msgpack.Marshal(m)
	if err != nil {
		return fmt.Errorf("encode %s: %w", m.kind(), err)
	}
	if len(body) > MaxFrame {
		return fmt.Errorf("encode %s: %w: %d bytes, limit %d", m.kind(), errOversize, len(body), MaxFrame)
	}
	var hdr [4]byte
	if m.Welcome != nil {
		c.limit = maxClientFrame
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
