package probe

import (
	"bytes"
	"context"
	"encoding/binary"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
)

// fuzzStream is a perf stream in memory: the request and upload to read,
// and a count of the response.
type fuzzStream struct {
	*bytes.Reader
	written  uint64
	canceled bool
}

func (s *fuzzStream) StreamID() quic.StreamID          { return 0 }
func (s *fuzzStream) CancelRead(quic.StreamErrorCode)  {}
func (s *fuzzStream) SetReadDeadline(time.Time) error  { return nil }
func (s *fuzzStream) Close() error                     { return nil }
func (s *fuzzStream) CancelWrite(quic.StreamErrorCode) { s.canceled = true }
func (s *fuzzStream) Write(b []byte) (int, error)      { s.written += uint64(len(b)); return len(b), nil }

// FuzzPerfRequest: whatever a perf stream's 8-byte request and upload say,
// the agent moves no more than the session's byte limit, both ways, and a
// request within it is answered exactly.
func FuzzPerfRequest(f *testing.F) {
	for _, req := range []uint64{0, 1, 1000, 1 << 20, perfUnlimited, perfUnlimited - 1, 1 << 63} {
		f.Add(binary.BigEndian.AppendUint64(nil, req), uint16(10))
	}
	f.Add([]byte{1, 2, 3}, uint16(0))
	const limit = 1 << 20
	f.Fuzz(func(t *testing.T, head []byte, upload uint16) {
		in := append(append([]byte{}, head...), make([]byte, upload)...)
		a := &quicAgent{p: QUICParams{WriteSize: 4096}, limit: limit}
		a.budget.Store(limit)
		s := &fuzzStream{Reader: bytes.NewReader(in)}
		a.serveStream(context.Background(), nil, s, s)
		moved := uint64(len(in)) - uint64(s.Reader.Len()) + s.written
		if moved > limit+perfRequestLen {
			t.Fatalf("moved %d bytes, limit %d", moved, limit)
		}
		if len(head) < perfRequestLen {
			return
		}
		req := binary.BigEndian.Uint64(head)
		if req != perfUnlimited && uint64(len(in)) <= limit && req <= limit-uint64(len(in)-perfRequestLen) && s.written != req {
			t.Fatalf("asked %d bytes, got %d", req, s.written)
		}
	})
}
