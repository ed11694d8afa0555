// Package bpf holds the eBPF programs of the collector and their generated
// Go bindings. The generated *_bpfel.go and *.o files are committed so that
// `go build` needs no clang.
//
// Regenerate (needs clang-16 and llvm-strip-16) with:
//
//	cd bpf && go generate
//
// sched.c is built for BPF ISA v3 (kernel 5.12+): its thread slots are
// handed out with an atomic fetch-and-add that returns the old value.
//
// Output is deterministic: running it twice gives byte-identical files.
package bpf

//go:generate go tool bpf2go -cc clang-16 -strip llvm-strip-16 -target amd64 -type probe_event -type session -type probe_stats Probe probe.c -- -I./headers -Wall -Werror
//go:generate go tool bpf2go -cc clang-16 -strip llvm-strip-16 -target amd64 -type sched_stats -type thread_key -type thread_entry Sched sched.c -- -mcpu=v3 -I./headers -Wall -Werror
