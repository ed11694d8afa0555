package probe

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/vmihailenco/msgpack/v5"
)

// MaxFrame bounds a control frame's body, in both directions, so that a peer
// cannot make the other allocate at will. Bulk results travel in batches.
const MaxFrame = 1 << 20

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
}

func newFrameConn(rw io.ReadWriter) *frameConn {
	return &frameConn{r: bufio.NewReader(rw), w: bufio.NewWriter(rw)}
}

func (c *frameConn) read() (*Message, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(c.r, hdr[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n > MaxFrame {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", errOversize, n, MaxFrame)
	}
	if cap(c.buf) < int(n) {
		c.buf = make([]byte, n)
	}
	body := c.buf[:n]
	if _, err := io.ReadFull(c.r, body); err != nil {
		return nil, fmt.Errorf("%w: body cut short: %w", errMalformed, err)
	}
	m, err := unmarshal(body)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errMalformed, err)
	}
	if m.kind() == "" {
		return nil, fmt.Errorf("%w: no known message in it", errMalformed)
	}
	return m, nil
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
	binary.BigEndian.PutUint32(hdr[:], uint32(len(body)))
	if _, err := c.w.Write(hdr[:]); err != nil {
		return err
	}
	if _, err := c.w.Write(body); err != nil {
		return err
	}
	return c.w.Flush()
}

// unmarshal guards against the msgpack library's panics on some malformed
// inputs: a hostile frame must not take the agent down.
func unmarshal(body []byte) (m *Message, err error) {
	defer func() {
		if p := recover(); p != nil {
			m, err = nil, fmt.Errorf("%v", p)
		}
	}()
	m = new(Message)
	return m, msgpack.Unmarshal(body, m)
}
