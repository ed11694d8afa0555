package dump

import (
	"bytes"
	"runtime"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"
)

// allocated returns the bytes fn allocated (TotalAlloc only grows: no GC
// needed).
func allocated(fn func()) uint64 {
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	fn()
	runtime.ReadMemStats(&m1)
	return m1.TotalAlloc - m0.TotalAlloc
}

// readAllocBound is what reading a dump of n bytes may allocate: the
// reader's 1 MiB buffer and its first slab of stamps, and a fixed multiple of
// the input (a one-byte mask becomes a 32-byte Stamps).
func readAllocBound(n int) uint64 { return 1<<20 + slabPackets*32 + 64<<10 + 64*uint64(n) }

func hostileDumps(t testing.TB) map[string][]byte {
	var head bytes.Buffer
	if w, err := NewWriter(&head, Header{Mode: ModeEcho, Created: time.Unix(1, 0).UTC()}); err != nil || w.Flush() != nil {
		t.Fatal(err)
	}
	h := head.Bytes()
	cat := func(parts ...[]byte) []byte { return bytes.Join(append([][]byte{}, parts...), nil) }
	header := func(meta []byte) []byte {
		// the header's map with a meta entry of the given bytes
		b, _ := msgpack.Marshal(map[string]any{"format": Format, "version": Version, "mode": "echo"})
		b[0]++ // one more pair
		return cat(b, []byte{0xa4, 'm', 'e', 't', 'a'}, meta)
	}
	return map[string][]byte{
		"meta map32 of 2^32-1":      header([]byte{0xdf, 0xff, 0xff, 0xff, 0xff}),
		"meta str32 of 4 GiB":       header([]byte{0x81, 0xa1, 'k', 0xdb, 0xff, 0xff, 0xff, 0xff}),
		"echo record map32":         cat(h, []byte{0x92, recordEcho, 0xdf, 0xff, 0xff, 0xff, 0xff}),
		"train of 65535 packets":    cat(h, []byte{0x92, recordTrain, 0x96, 1, 1, 100, 0, 0xdd, 0xff, 0xff, 0xff, 0xff, 0xcd, 0xff, 0xff}),
		"train list of 2^32 values": cat(h, []byte{0x92, recordTrain, 0x96, 1, 1, 100, 0, 0xdd, 0xff, 0xff, 0xff, 0xff, 0x01, 0x00}),
		"end record str32":          cat(h, []byte{0x92, recordEnd, 0x81, 0xdb, 0xff, 0xff, 0xff, 0xff}),
	}
}

// TestHostileDumps: lengths a dump declares but does not hold are refused
// before anything is allocated for them.
func TestHostileDumps(t *testing.T) {
	for name, b := range hostileDumps(t) {
		var err error
		got := allocated(func() { _, _, _, err = readAllTrains(b) })
		if err == nil {
			t.Errorf("%s: read without an error", name)
		}
		if got > readAllocBound(len(b)) {
			t.Errorf("%s: %d bytes allocated for a %d-byte dump, bound %d (%v)", name, got, len(b), readAllocBound(len(b)), err)
		}
	}
}

// TestDumpAllocBound: a dump full of the smallest stamp lists there are
// stays within the bound.
func TestDumpAllocBound(t *testing.T) {
	var b bytes.Buffer
	if w, err := NewWriter(&b, Header{Mode: ModeCapacity}); err != nil || w.Flush() != nil {
		t.Fatal(err)
	}
	n := maxStampPackets - 1
	for range 16 {
		b.Write([]byte{0x92, recordTrain, 0x96, 1, 1, 100, 0, 0xdd, 0, byte((n + 1) >> 16), byte((n + 1) >> 8), byte(n + 1), 0xcd, byte(n >> 8), byte(n)})
		b.Write(make([]byte, n)) // empty masks
		b.Write([]byte{0x91, 0})
	}
	var err error
	var trains []Train
	got := allocated(func() { _, _, trains, err = readAllTrains(b.Bytes()) })
	if err != nil || len(trains) != 16 {
		t.Fatalf("read %d trains: %v", len(trains), err)
	}
	t.Logf("%d bytes allocated for a %d-byte dump", got, b.Len())
	if got > readAllocBound(b.Len()) {
		t.Fatalf("%d bytes allocated for a %d-byte dump, bound %d", got, b.Len(), readAllocBound(b.Len()))
	}
}
