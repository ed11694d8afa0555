package bpf

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestGeneratedUpToDate reruns the go:generate lines of gen.go into a
// temporary directory and compares the output with the committed files:
// it fails when C changed without regenerating, or when the build is not
// reproducible.
func TestGeneratedUpToDate(t *testing.T) {
	if testing.Short() {
		t.Skip("runs clang; skipped in -short")
	}
	for _, tool := range []string{"clang-16", "llvm-strip-16"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s to regenerate the objects: %v", tool, err)
		}
	}
	lines := generateLines(t)
	if len(lines) == 0 {
		t.Fatal("no go:generate lines in gen.go")
	}
	dir := t.TempDir()
	for _, args := range lines {
		if len(args) < 3 || args[0] != "go" || args[1] != "tool" || args[2] != "bpf2go" {
			t.Fatalf("unexpected go:generate line %q", args)
		}
		args = append([]string{args[0], args[1], args[2], "-output-dir", dir}, args[3:]...)
		cmd := exec.Command(args[0], args[1:]...)
		cmd.Env = append(os.Environ(), "GOPACKAGE=bpf", "GOFILE=gen.go")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	fresh, err := filepath.Glob(filepath.Join(dir, "*"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fresh {
		want, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		name := filepath.Base(f)
		got, err := os.ReadFile(name)
		if err != nil {
			t.Errorf("%s is generated but not in the tree: run go generate in bpf/", name)
			continue
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s differs from a fresh go generate: run it in bpf/ and commit the result", name)
		}
	}
}

func generateLines(t *testing.T) [][]string {
	t.Helper()
	f, err := os.Open("gen.go")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var lines [][]string
	s := bufio.NewScanner(f)
	for s.Scan() {
		if rest, ok := strings.CutPrefix(s.Text(), "//go:generate "); ok {
			lines = append(lines, strings.Fields(rest))
		}
	}
	if err := s.Err(); err != nil {
		t.Fatal(err)
	}
	return lines
}
