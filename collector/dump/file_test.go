package dump

import (
	"bytes"
	"errors"
	"flag"
	"io"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite golden files")

func sampleDump(t testing.TB) ([]byte, []EchoRecord) {
	recs := []EchoRecord{
		{Seq: 0, Size: 64, Replies: 1,
			ClientTx: Stamps{SourceUser: 1000, SourceSW: 1_700_000_000_000_001_000, SourceEBPF: 1010},
			ClientRx: Stamps{SourceUser: 9000, SourceSW: 1_700_000_000_000_009_000, SourceEBPF: 8990},
			AgentRx:  Stamps{SourceSW: 1_700_000_000_000_004_000, SourceEBPF: 4000},
			AgentTx:  Stamps{SourceSW: 1_700_000_000_000_005_000, SourceEBPF: 5000}},
		{Seq: 1, Size: 64}, // lost
	}
	var b bytes.Buffer
	w, err := NewWriter(&b, Header{Mode: ModeEcho, Created: time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC),
		Meta: map[string]string{"agent": "10.77.0.1"}})
	if err != nil {
		t.Fatal(err)
	}
	for i := range recs {
		if err := w.Write(&Record{Echo: &recs[i]}); err != nil {
			t.Fatal(err)
		}
	}
	for _, r := range []*Record{{Train: sampleTrain()}, {End: &End{Duration: 1500 * time.Millisecond, Interrupted: true}}} {
		if err := w.Write(r); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes(), recs
}

// sampleTrain is a 3-packet train: the second packet lost, negative and large
// values to pin the integer coding.
func sampleTrain() *Train {
	return &Train{ID: 70000, Phase: PhaseOne, Size: 600, Dups: 1,
		Tx: []Stamps{{SourceUser: 5, SourceEBPF: 1 << 40}, {SourceUser: 5}, {SourceUser: 5, SourceSW: -3}},
		Rx: []Stamps{{SourceEBPF: 1<<62 + 1, SourceHW: 255}, {}, {SourceSW: 65536}}}
}

func readAll(data []byte) (Header, []EchoRecord, error) {
	h, recs, _, err := readAllTrains(data)
	return h, recs, err
}

func readAllTrains(data []byte) (Header, []EchoRecord, []Train, error) {
	r, err := NewReader(bytes.NewReader(data))
	if err != nil {
		return Header{}, nil, nil, err
	}
	var recs []EchoRecord
	var trains []Train
	for {
		rec, err := r.Next()
		if errors.Is(err, io.EOF) {
			return r.Header(), recs, trains, nil
		}
		if err != nil {
			return r.Header(), recs, trains, err
		}
		switch {
		case rec.Echo != nil:
			recs = append(recs, *rec.Echo)
		case rec.Train != nil:
			trains = append(trains, *rec.Train)
		}
	}
}

// The format is pinned by a golden file: an old dump must stay readable.
func TestGoldenEchoDump(t *testing.T) {
	data, want := sampleDump(t)
	const golden = "testdata/echo-v1.msgpack"
	if *update {
		if err := os.WriteFile(golden, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	g, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(g, data) {
		t.Fatalf("encoding changed from %s; bump Version if that is intended, then -update", golden)
	}
	h, got, trains, err := readAllTrains(g)
	if err != nil {
		t.Fatal(err)
	}
	if len(trains) != 1 || !reflect.DeepEqual(trains[0], *sampleTrain()) {
		t.Fatalf("train round trip:\n got %+v\nwant %+v", trains, sampleTrain())
	}
	if h.Mode != ModeEcho || h.Version != Version || h.Meta["agent"] != "10.77.0.1" {
		t.Fatalf("header %+v", h)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("round trip:\n got %+v\nwant %+v", got, want)
	}
}

func TestTruncatedDump(t *testing.T) {
	data, _ := sampleDump(t)
	// Cut inside the last record: the ones before survive, the cut is reported.
	_, recs, trains, err := readAllTrains(data[:len(data)-3])
	if !errors.Is(err, ErrTruncated) || len(recs) != 2 || len(trains) != 1 {
		t.Fatalf("cut in the last record: %d echoes %d trains, err %v", len(recs), len(trains), err)
	}
	if _, _, err := readAll(data[:5]); err == nil || !strings.Contains(err.Error(), "not a probe dump") {
		t.Fatalf("cut in header: %v", err)
	}
	if _, _, err := readAll([]byte("hello, world")); err == nil || !strings.Contains(err.Error(), "not a probe dump") {
		t.Fatalf("not a dump: %v", err)
	}
}

// FuzzReader: any input gives records or an error, never a panic, and what
// it reads re-encodes to the same records.
func FuzzReader(f *testing.F) {
	data, _ := sampleDump(f)
	f.Add(data)
	f.Add(data[:len(data)/2])
	f.Fuzz(func(t *testing.T, b []byte) {
		h, recs, trains, err := readAllTrains(b)
		if err != nil {
			return
		}
		var buf bytes.Buffer
		w, err := NewWriter(&buf, h)
		if err != nil {
			t.Fatal(err)
		}
		for i := range recs {
			w.Write(&Record{Echo: &recs[i]})
		}
		for i := range trains {
			w.Write(&Record{Train: &trains[i]})
		}
		w.Flush()
		_, again, againTrains, err := readAllTrains(buf.Bytes())
		if err != nil || !reflect.DeepEqual(again, recs) || !reflect.DeepEqual(againTrains, trains) {
			t.Fatalf("re-encoding changed the records: %v", err)
		}
	})
}
