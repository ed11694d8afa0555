package yamlline

import (
	"errors"
	"testing"

	"go.yaml.in/yaml/v3"
)

func TestErrorsNameTheirLine(t *testing.T) {
	r := Reader{Doc: "scenario"}
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte("a: 1\nb: x\nb: 2\n"), &doc); err != nil {
		t.Fatal(err)
	}
	_, err := r.Fields(doc.Content[0], "a", "b")
	if err == nil || err.Error() != `scenario:3: key "b" given twice` {
		t.Errorf("twice: %v", err)
	}
	if _, err := r.Positive(doc.Content[0].Content[3], 10); err == nil || err.Error() != `scenario:2: want a whole number from 1 to 10, not "x"` {
		t.Errorf("positive: %v", err)
	}
	perr := yaml.Unmarshal([]byte("a: [1\nb: 2\n"), &doc)
	e, ok := errors.AsType[*Error](r.FromParser(perr))
	if !ok || e.Line < 1 || e.Doc != "scenario" {
		t.Errorf("parser error %v → %+v", perr, e)
	}
}
