// Package yamlline reads YAML nodes of the project's files (scenarios, the
// monitor's config) so that every error names the line it is about.
package yamlline

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Error is a problem at one line of a YAML file.
type Error struct {
	File string // "" until the caller that read the file fills it in
	Doc  string // what the file is ("scenario", "config"), said when File is ""
	Line int
	Msg  string
}

func (e *Error) Error() string {
	f := e.File
	if f == "" {
		f = e.Doc
	}
	return fmt.Sprintf("%s:%d: %s", f, e.Line, e.Msg)
}

// Reader makes the errors of one kind of file.
type Reader struct{ Doc string }

// At is an error at n's line.
func (r Reader) At(n *yaml.Node, format string, args ...any) error {
	return &Error{Doc: r.Doc, Line: n.Line, Msg: fmt.Sprintf(format, args...)}
}

// FromParser turns the parser's "yaml: line 3: ..." into an Error.
func (r Reader) FromParser(err error) error {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	line := 1
	if rest, ok := strings.CutPrefix(msg, "line "); ok {
		if n, tail, ok := strings.Cut(rest, ": "); ok {
			if l, err := strconv.Atoi(n); err == nil {
				line, msg = l, tail
			}
		}
	}
	return &Error{Doc: r.Doc, Line: line, Msg: msg}
}

// Fields maps a mapping node's keys to their values, refusing keys not
// allowed and keys given twice.
func (r Reader) Fields(n *yaml.Node, allowed ...string) (map[string]*yaml.Node, error) {
	if n.Kind != yaml.MappingNode {
		return nil, r.At(n, "want a mapping with keys among %s", strings.Join(allowed, ", "))
	}
	out := map[string]*yaml.Node{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := n.Content[i]
		if !slices.Contains(allowed, k.Value) {
			return nil, r.At(k, "unknown key %q: want one of %s", k.Value, strings.Join(allowed, ", "))
		}
		if out[k.Value] != nil {
			return nil, r.At(k, "key %q given twice", k.Value)
		}
		out[k.Value] = n.Content[i+1]
	}
	return out, nil
}

// Str reads a non-empty string.
func (r Reader) Str(v *yaml.Node) (string, error) {
	if v.Kind != yaml.ScalarNode || v.Tag == "!!null" || v.Value == "" {
		return "", r.At(v, "want a non-empty string")
	}
	return v.Value, nil
}

// Positive reads a whole number from 1 to maxv.
func (r Reader) Positive(v *yaml.Node, maxv int) (int, error) {
	n, err := strconv.Atoi(v.Value)
	if v.Kind != yaml.ScalarNode || err != nil || n < 1 || n > maxv {
		return 0, r.At(v, "want a whole number from 1 to %d, not %q", maxv, v.Value)
	}
	return n, nil
}
