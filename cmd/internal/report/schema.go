package report

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"sort"
	"strings"
)

// Schema is the set of objects docs/json.md documents: per object, its
// keys and their types. Tests hold every document probe prints to it, so
// that the page and the code cannot drift apart.
//
// A type is string, number, integer, boolean, the name of another object,
// [T] (a list of T), {string: T} (an object of any keys), each optionally
// followed by " or null".
type Schema map[string]map[string]string

var (
	headingName = regexp.MustCompile("^#+ .*?`([A-Za-z][A-Za-z0-9]*)`")
	tableRow    = regexp.MustCompile("^\\| `([a-z0-9_]+)` \\| ([^|]+) \\|")
)

// ParseSchema reads the tables of docs/json.md: each table belongs to the
// object named by the first `Name` of the heading above it.
func ParseSchema(md []byte) (Schema, error) {
	s := Schema{}
	name := ""
	sc := bufio.NewScanner(bytes.NewReader(md))
	for sc.Scan() {
		line := sc.Text()
		if m := headingName.FindStringSubmatch(line); m != nil {
			name = m[1]
			continue
		}
		m := tableRow.FindStringSubmatch(line)
		if m == nil || name == "" {
			continue
		}
		if s[name] == nil {
			s[name] = map[string]string{}
		}
		s[name][m[1]] = strings.Trim(strings.TrimSpace(m[2]), "`")
	}
	if len(s) == 0 {
		return nil, fmt.Errorf("no object tables found")
	}
	return s, sc.Err()
}

// Check holds a JSON document to the object root: every key documented,
// every documented key present, every value of its type.
func (s Schema) Check(doc []byte, root string) error {
	var v any
	d := json.NewDecoder(bytes.NewReader(doc))
	d.UseNumber()
	if err := d.Decode(&v); err != nil {
		return err
	}
	var errs []string
	s.check(v, root, "", &errs)
	if len(errs) > 0 {
		sort.Strings(errs)
		return fmt.Errorf("%d disagreements with the documented schema:\n%s", len(errs), strings.Join(errs, "\n"))
	}
	return nil
}

func (s Schema) check(v any, typ, path string, errs *[]string) {
	bad := func(format string, a ...any) {
		*errs = append(*errs, fmt.Sprintf("%s: ", strings.TrimPrefix(path, "."))+fmt.Sprintf(format, a...))
	}
	if t, ok := strings.CutSuffix(typ, " or null"); ok {
		if v == nil {
			return
		}
		typ = t
	}
	if v == nil {
		bad("null, documented as %s", typ)
		return
	}
	switch {
	case typ == "string":
		if _, ok := v.(string); !ok {
			bad("%T, documented as a string", v)
		}
	case typ == "number" || typ == "integer":
		n, ok := v.(json.Number)
		if !ok {
			bad("%T, documented as a %s", v, typ)
		} else if _, err := n.Int64(); typ == "integer" && err != nil {
			bad("%s, documented as an integer", n)
		}
	case typ == "boolean":
		if _, ok := v.(bool); !ok {
			bad("%T, documented as a boolean", v)
		}
	case strings.HasPrefix(typ, "[") && strings.HasSuffix(typ, "]"):
		list, ok := v.([]any)
		if !ok {
			bad("%T, documented as a list", v)
			return
		}
		for i, x := range list {
			s.check(x, typ[1:len(typ)-1], fmt.Sprintf("%s[%d]", path, i), errs)
		}
	case strings.HasPrefix(typ, "{string: ") && strings.HasSuffix(typ, "}"):
		obj, ok := v.(map[string]any)
		if !ok {
			bad("%T, documented as an object", v)
			return
		}
		for k, x := range obj {
			s.check(x, strings.TrimSuffix(strings.TrimPrefix(typ, "{string: "), "}"), path+"."+k, errs)
		}
	default:
		keys, ok := s[typ]
		if !ok {
			bad("type %q is not documented", typ)
			return
		}
		obj, ok := v.(map[string]any)
		if !ok {
			bad("%T, documented as %s", v, typ)
			return
		}
		for k, x := range obj {
			t, ok := keys[k]
			if !ok {
				bad("key %q is not documented in %s", k, typ)
				continue
			}
			s.check(x, t, path+"."+k, errs)
		}
		for k := range keys {
			if _, ok := obj[k]; !ok {
				bad("documented key %q of %s is missing", k, typ)
			}
		}
	}
}

// SchemaRoots names the documented object of each schema.
var SchemaRoots = map[string]string{
	SchemaCapacity: "CapacityDoc",
	SchemaEcho:     "EchoDoc",
	SchemaTCP:      "TCPDoc",
	SchemaQUIC:     "QUICDoc",
	SchemaTCPQUIC:  "TCPQUICDoc",
	SchemaWatch:    "WatchDoc",
	SchemaReport:   "ReportDoc",
	SchemaCompare:  "CompareDoc",
}

// CheckDoc holds a document to the object its "schema" names.
func (s Schema) CheckDoc(doc []byte) error {
	var head struct {
		Schema string `json:"schema"`
	}
	if err := json.Unmarshal(doc, &head); err != nil {
		return err
	}
	root, ok := SchemaRoots[head.Schema]
	if !ok {
		return fmt.Errorf("schema %q is not one of probe's", head.Schema)
	}
	return s.Check(doc, root)
}

// StreamRoots names, per schema, the documented objects of a
// --json-stream's start, interval and end events.
var StreamRoots = map[string][3]string{
	SchemaEcho:  {"EchoStreamStart", "EchoPoint", "EchoStreamEnd"},
	SchemaTCP:   {"TCPStreamStart", "TCPLiveInterval", "TCPDoc"},
	SchemaQUIC:  {"QUICStreamStart", "QUICLiveInterval", "QUICDoc"},
	SchemaWatch: {"WatchStreamStart", "ResourceSample", "WatchDoc"},
}

// CheckStream holds the lines of a --json-stream to the documented schema:
// each line an event and its data, a start first that names the schema,
// intervals, an end last, and each event's data to its object. It returns
// how many intervals there were.
func (s Schema) CheckStream(out []byte) (intervals int, err error) {
	lines := strings.Split(strings.TrimSuffix(string(out), "\n"), "\n")
	var roots [3]string
	for i, line := range lines {
		var ev map[string]json.RawMessage
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			return intervals, fmt.Errorf("line %d: %v", i+1, err)
		}
		var name string
		if err := json.Unmarshal(ev["event"], &name); err != nil || len(ev) != 2 || ev["data"] == nil {
			return intervals, fmt.Errorf("line %d: want {\"event\": NAME, \"data\": …}, got %.80s", i+1, line)
		}
		want := "interval"
		switch i {
		case 0:
			want = "start"
		case len(lines) - 1:
			want = "end"
		}
		if name != want {
			return intervals, fmt.Errorf("line %d: event %q, want %q", i+1, name, want)
		}
		k := 1
		switch name {
		case "start":
			var head struct {
				Schema string `json:"schema"`
			}
			json.Unmarshal(ev["data"], &head)
			r, ok := StreamRoots[head.Schema]
			if !ok {
				return 0, fmt.Errorf("line 1: schema %q has no stream", head.Schema)
			}
			roots, k = r, 0
		case "end":
			k = 2
		default:
			intervals++
		}
		if err := s.Check(ev["data"], roots[k]); err != nil {
			return intervals, fmt.Errorf("line %d (%s): %v", i+1, roots[k], err)
		}
	}
	if len(lines) < 2 {
		return 0, fmt.Errorf("%d lines: a stream has a start and an end at least", len(lines))
	}
	return intervals, nil
}
