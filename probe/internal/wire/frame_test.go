package wire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"os"
	"reflect"
	"runtime"
	"testing"
	"time"

	"github.com/probe-dev/probe/collector/dump"
)

var update = flag.Bool("update", false, "rewrite golden files")

// goldenFrames are fixed messages whose encoding is pinned in testdata: a
// change breaks agents and clients of other releases, so it needs a
// ProtocolVersion bump.
func goldenFrames() []*Message {
	return []*Message{
		{Hello: &Hello{Version: ProtocolVersion, Client: "probe"}},
		{Open: &Open{Mode: "echo", Echo: &EchoParams{Count: 100, Size: 64, Interval: 10 * time.Millisecond}}},
		{Stamps: &Stamps{Records: []AgentStamp{{Seq: 3, Rx: dump.Stamps{1, 2, 3, 0}, Tx: dump.Stamps{4, 5, 6, 0}}}}},
		{Error: &Error{Code: "auth", Message: "authentication failed: wrong key"}},
	}
}

func encodeFrames(t testing.TB, ms []*Message) []byte {
	var b bytes.Buffer
	fc := NewConn(&b)
	for _, m := range ms {
		if err := fc.Write(m); err != nil {
			t.Fatal(err)
		}
	}
	return b.Bytes()
}

func TestGoldenFrames(t *testing.T) {
	data := encodeFrames(t, goldenFrames())
	const golden = "testdata/frames-v1.bin"
	if *update {
		os.WriteFile(golden, data, 0o644)
	}
	g, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (go test -update creates it)", err)
	}
	if !bytes.Equal(g, data) {
		t.Fatal("frame encoding changed: bump ProtocolVersion if intended, then -update")
	}
	fc := NewConn(bytes.NewBuffer(g))
	for i, want := range goldenFrames() {
		got, err := fc.Read()
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("frame %d: got %+v want %+v", i, got, want)
		}
	}
}

// FuzzFrame: no input crashes the frame reader or makes it allocate more
// than a bounded multiple of its size, and what it accepts re-encodes to an
// equal message.
func FuzzFrame(f *testing.F) {
	for _, m := range goldenFrames() {
		f.Add(encodeFrames(f, []*Message{m}))
	}
	f.Add(stampsFrame(0xffffffff))
	f.Fuzz(func(t *testing.T, b []byte) {
		var m *Message
		var err error
		got := allocated(func() {
			fc := NewConn(bytes.NewBuffer(b))
			fc.Limit = MaxFrame // as a client's, after the handshake
			m, err = fc.Read()
		})
		if got > frameAllocBound(len(b)) {
			t.Fatalf("%d bytes allocated for a %d-byte frame", got, len(b))
		}
		if err != nil {
			return
		}
		again, err := NewConn(bytes.NewBuffer(encodeFrames(t, []*Message{m}))).Read()
		if err != nil || again.Kind() != m.Kind() {
			t.Fatalf("re-encoding %s: %v", m.Kind(), err)
		}
	})
}

// stampsFrame is a control frame whose stamps message declares n records
// and holds none: the 26-byte frame that ended the agent with n = 2^32-1.
func stampsFrame(n uint32) []byte {
	body := []byte{0x81, 0xa6, 's', 't', 'a', 'm', 'p', 's', 0x81, 0xa7, 'r', 'e', 'c', 'o', 'r', 'd', 's', 0xdd, byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)}
	return append([]byte{0, 0, 0, byte(len(body))}, body...)
}

// allocated returns the bytes fn allocated (TotalAlloc only grows: no GC
// needed).
func allocated(fn func()) uint64 {
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	fn()
	runtime.ReadMemStats(&m1)
	return m1.TotalAlloc - m0.TotalAlloc
}

// frameAllocBound is what reading a frame may allocate: the reader's
// buffers, and a fixed multiple of the frame for what it decodes to (a
// one-byte empty map becomes an 80-byte record, allocated twice).
func frameAllocBound(n int) uint64 { return 64<<10 + 192*uint64(n) }

// TestHostileLengths: lengths a frame declares but does not hold are
// refused before anything is allocated for them.
func TestHostileLengths(t *testing.T) {
	frames := map[string][]byte{
		"records 2^32-1": stampsFrame(0xffffffff),
		"records 10^5":   stampsFrame(100_000),
		"records 10^7":   stampsFrame(10_000_000),
	}
	for _, b := range [][]byte{
		{0xdf, 0xff, 0xff, 0xff, 0xff, 0xa5, 'h', 'e', 'l', 'l', 'o'},                                                 // map32
		{0x81, 0xa5, 'h', 'e', 'l', 'l', 'o', 0x81, 0xa6, 'c', 'l', 'i', 'e', 'n', 't', 0xdb, 0xff, 0xff, 0xff, 0xf0}, // str32
		{0x81, 0xa5, 'h', 'e', 'l', 'l', 'o', 0x81, 0xa5, 'n', 'o', 'n', 'c', 'e', 0xc6, 0x7f, 0xff, 0xff, 0xff},      // bin32
	} {
		frames[fmt.Sprintf("% x", b[:1])] = append([]byte{0, 0, 0, byte(len(b))}, b...)
	}
	for name, b := range frames {
		var err error
		got := allocated(func() { _, err = NewConn(bytes.NewBuffer(b)).Read() })
		if !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v, want a malformed frame", name, err)
		}
		if got > frameAllocBound(len(b)) {
			t.Errorf("%s: %d bytes allocated for a %d-byte frame, bound %d", name, got, len(b), frameAllocBound(len(b)))
		}
	}
}

// TestFrameLimits: frames are small until the handshake ends, and from
// clients after it.
func TestFrameLimits(t *testing.T) {
	var agent, client bytes.Buffer
	a, c := NewConn(&agent), NewConn(&client)
	big := &Message{Hello: &Hello{Client: string(make([]byte, MaxHandshakeFrame))}}
	a.Write(big)
	if _, err := NewConn(&agent).Read(); !errors.Is(err, ErrOversize) {
		t.Fatalf("a %d-byte hello: %v, want oversize", MaxHandshakeFrame, err)
	}
	a.Write(&Message{Welcome: &Welcome{}})
	c.Write(&Message{Welcome: &Welcome{}})
	if _, err := c.Read(); err != nil {
		t.Fatal(err)
	}
	if a.Limit != MaxClientFrame || c.Limit != MaxFrame {
		t.Fatalf("after the welcome: agent reads up to %d, client %d", a.Limit, c.Limit)
	}
}

// TestFrameAllocBound: a full-size frame of the smallest records there are
// (empty maps, one byte each) stays within the bound.
func TestFrameAllocBound(t *testing.T) {
	n := MaxFrame - 32
	body := append([]byte{0x81, 0xa6, 's', 't', 'a', 'm', 'p', 's', 0x81, 0xa7, 'r', 'e', 'c', 'o', 'r', 'd', 's', 0xdd, byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)},
		bytes.Repeat([]byte{0x80}, n)...)
	frame := binary.BigEndian.AppendUint32(nil, uint32(len(body)))
	frame = append(frame, body...)
	var m *Message
	var err error
	got := allocated(func() {
		fc := NewConn(bytes.NewBuffer(frame))
		fc.Limit = MaxFrame // as a client's, after the handshake
		m, err = fc.Read()
	})
	if err != nil || len(m.Stamps.Records) != n {
		t.Fatalf("read: %v", err)
	}
	t.Logf("%d bytes allocated for a %d-byte frame (%.1f per byte)", got, len(frame), float64(got)/float64(len(frame)))
	if got > frameAllocBound(len(frame)) {
		t.Fatalf("%d bytes allocated for a %d-byte frame, bound %d", got, len(frame), frameAllocBound(len(frame)))
	}
}

// A length header alone does not make the reader allocate what it declares:
// the body's buffer grows as its bytes arrive (found by FuzzFrame).
func TestFrameHeaderAlone(t *testing.T) {
	var err error
	got := allocated(func() {
		fc := NewConn(bytes.NewBuffer(binary.BigEndian.AppendUint32(nil, MaxFrame)))
		fc.Limit = MaxFrame
		_, err = fc.Read()
	})
	if !errors.Is(err, ErrMalformed) || got > frameAllocBound(4) {
		t.Fatalf("a 4-byte header of %d: %v, %d bytes allocated", MaxFrame, err, got)
	}
}
