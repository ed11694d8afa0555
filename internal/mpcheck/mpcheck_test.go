package mpcheck

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"
)

type sample struct {
	A []int64           `msgpack:"a"`
	S string            `msgpack:"s"`
	B []byte            `msgpack:"b"`
	M map[string]string `msgpack:"m"`
	T time.Time         `msgpack:"t"`
	F float64           `msgpack:"f"`
	N []*sample         `msgpack:"n"`
}

func samples(t testing.TB) [][]byte {
	long := bytes.Repeat([]byte("x"), 70000)
	vs := []any{
		[][]int{{1}}, [][][]int{{{}}, {{1, 2}}}, nil, true, 1, -1, 300, -300, 1 << 40, 1.5, float32(2.5), "", "abc", string(long), long[:300],
		[]int{}, make([]int, 20), make([]int, 70000), map[string]int{"a": 1},
		time.Unix(1700000000, 5).UTC(),
		&sample{A: []int64{1, 1 << 33, -5}, S: "x", B: []byte{1, 2}, M: map[string]string{"k": "v"},
			T: time.Unix(1, 0).UTC(), N: []*sample{{S: "inner"}}},
	}
	var out [][]byte
	for _, v := range vs {
		b, err := msgpack.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

func TestValidAcceptsEncodings(t *testing.T) {
	for i, b := range samples(t) {
		if err := Valid(b); err != nil {
			t.Errorf("sample %d (% x...): %v", i, b[:min(len(b), 8)], err)
		}
		got, err := ReadValue(bufio.NewReader(bytes.NewReader(append(b, 0xc0))), nil, len(b))
		if err != nil || !bytes.Equal(got, b) {
			t.Errorf("sample %d: ReadValue read %d of %d bytes: %v", i, len(got), len(b), err)
		}
	}
}

// repro is the control frame body that killed the agent: a stamps message
// whose records array declares 2^32-1 elements.
var repro = []byte{0x81, 0xa6, 's', 't', 'a', 'm', 'p', 's', 0x81, 0xa7, 'r', 'e', 'c', 'o', 'r', 'd', 's', 0xdd, 0xff, 0xff, 0xff, 0xff}

func TestValidDepth(t *testing.T) {
	if err := Valid(append(bytes.Repeat([]byte{0x91}, MaxDepth), 1)); err != nil {
		t.Fatalf("%d levels: %v", MaxDepth, err)
	}
}

func TestValidRefuses(t *testing.T) {
	for _, c := range []struct {
		name string
		b    []byte
	}{
		{"array32 of 2^32-1", repro},
		{"array16 longer than its bytes", []byte{0xdc, 0x00, 0x03, 0x01, 0x02}},
		{"map32 of 2^32-1 pairs", []byte{0xdf, 0xff, 0xff, 0xff, 0xff, 0, 0}},
		{"fixmap of 15 pairs in 3 bytes", []byte{0x8f, 1, 2, 3}},
		{"str32 of 4 GiB", []byte{0xdb, 0xff, 0xff, 0xff, 0xff, 'a'}},
		{"bin16 cut short", []byte{0xc5, 0x01, 0x00, 1, 2, 3}},
		{"ext32 of 4 GiB", []byte{0xc9, 0xff, 0xff, 0xff, 0xff, 0x01, 0x00}},
		{"nested arrays whose counts add up past the input", []byte{0x92, 0x9f, 0x9f, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}},
		{"too deep", append(bytes.Repeat([]byte{0x91}, MaxDepth+1), 1)},
		{"never-used byte", []byte{0xc1}},
		{"trailing bytes", []byte{0x01, 0x02}},
		{"empty", nil},
	} {
		if err := Valid(c.b); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", c.name, err)
		}
	}
}

func TestReadValueAllocatesWhatArrives(t *testing.T) {
	r := bufio.NewReader(bytes.NewReader(repro))
	got, err := ReadValue(r, nil, 1<<20)
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("got %v, want unexpected EOF", err)
	}
	if cap(got) > 1024 {
		t.Fatalf("grew to %d bytes for a %d-byte input", cap(got), len(repro))
	}
	big := append([]byte{0xdb, 0, 0x10, 0, 0}, make([]byte, 1<<20)...)
	if _, err := ReadValue(bufio.NewReader(bytes.NewReader(big)), nil, 1000); !errors.Is(err, ErrInvalid) {
		t.Fatalf("a 1 MiB string through a 1000-byte limit: %v", err)
	}
	if _, err := ReadValue(bufio.NewReader(bytes.NewReader(nil)), nil, 10); err != io.EOF {
		t.Fatalf("empty stream: %v, want io.EOF", err)
	}
}

// FuzzValid: what Valid accepts, ReadValue reads whole and the library
// decodes without allocating more than a multiple of its size.
func FuzzValid(f *testing.F) {
	for _, b := range samples(f) {
		if len(b) < 4096 {
			f.Add(b)
		}
	}
	f.Add(repro)
	f.Fuzz(func(t *testing.T, b []byte) {
		err := Valid(b)
		got, rerr := ReadValue(bufio.NewReader(bytes.NewReader(b)), nil, len(b))
		if err != nil {
			return
		}
		if rerr != nil || !bytes.Equal(got, b) {
			t.Fatalf("Valid accepts it, ReadValue read %d of %d bytes: %v", len(got), len(b), rerr)
		}
		var v any
		_ = msgpack.Unmarshal(b, &v)
	})
}
