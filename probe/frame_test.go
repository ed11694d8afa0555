package probe

import (
	"bytes"
	"context"
	"io"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/probe-dev/probe/probe/internal/wire"
)

func encodeFrames(t testing.TB, ms []*wire.Message) []byte {
	var b bytes.Buffer
	fc := wire.NewConn(&b)
	for _, m := range ms {
		if err := fc.Write(m); err != nil {
			t.Fatal(err)
		}
	}
	return b.Bytes()
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

// A hostile agent cannot kill its client the same way: the client reads
// frames through the same checks.
func TestClientRefusesHostileAgent(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		io.CopyN(io.Discard, c, 4) // the hello's length
		c.Write(stampsFrame(0xffffffff))
		io.Copy(io.Discard, c)
	}()
	var derr error
	got := allocated(func() {
		_, derr = Dial(context.Background(), ln.Addr().String(), ClientConfig{Timeout: 5 * time.Second})
	})
	if derr == nil || !strings.Contains(derr.Error(), "malformed frame") {
		t.Fatalf("dial: %v, want a malformed frame", derr)
	}
	if got > 4<<20 {
		t.Fatalf("the client allocated %d bytes for a 26-byte frame", got)
	}
}
