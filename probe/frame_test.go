package probe

import (
	"bytes"
	"flag"
	"os"
	"reflect"
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
		{Hello: &Hello{Version: ProtocolVersion, Client: "probe", Nonce: bytes.Repeat([]byte{7}, nonceLen)}},
		{Open: &Open{Mode: "echo", Echo: &EchoParams{Count: 100, Size: 64, Interval: 10 * time.Millisecond}}},
		{Stamps: &Stamps{Records: []AgentStamp{{Seq: 3, Rx: dump.Stamps{1, 2, 3, 0}, Tx: dump.Stamps{4, 5, 6, 0}}}}},
		{Error: &Error{Code: "auth", Message: "authentication failed: wrong key"}},
	}
}

func encodeFrames(t testing.TB, ms []*Message) []byte {
	var b bytes.Buffer
	fc := newFrameConn(&b)
	for _, m := range ms {
		if err := fc.write(m); err != nil {
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
	fc := newFrameConn(bytes.NewBuffer(g))
	for i, want := range goldenFrames() {
		got, err := fc.read()
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("frame %d: got %+v want %+v", i, got, want)
		}
	}
}

// FuzzFrame: no input crashes the frame reader, and what it accepts
// re-encodes to an equal message.
func FuzzFrame(f *testing.F) {
	for _, m := range goldenFrames() {
		f.Add(encodeFrames(f, []*Message{m}))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := newFrameConn(bytes.NewBuffer(b)).read()
		if err != nil {
			return
		}
		again, err := newFrameConn(bytes.NewBuffer(encodeFrames(t, []*Message{m}))).read()
		if err != nil || again.kind() != m.kind() {
			t.Fatalf("re-encoding %s: %v", m.kind(), err)
		}
	})
}
