package main

import (
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"

	"github.com/probe-dev/probe/collector"
)

// emptyHooks attaches programs that return at once to the tracepoints the
// tracer uses: the cost of the hooks themselves, the floor for any eBPF
// tracer of switches.
func emptyHooks() (func(), error) {
	var closers []func() error
	closeAll := func() {
		for _, c := range closers {
			c()
		}
	}
	for _, tp := range []string{"sched_switch", "sched_process_fork"} {
		prog, err := emptyProgram(tp)
		if err != nil {
			closeAll()
			return nil, err
		}
		closers = append(closers, prog.Close)
		l, err := link.AttachTracing(link.TracingOptions{Program: prog})
		if err != nil {
			closeAll()
			return nil, err
		}
		closers = append(closers, l.Close)
	}
	return closeAll, nil
}

// emptyProgram is a tp_btf program on tracepoint tp that returns at once.
func emptyProgram(tp string) (*ebpf.Program, error) {
	return ebpf.NewProgram(&ebpf.ProgramSpec{
		Type: ebpf.Tracing, AttachType: ebpf.AttachTraceRawTp, AttachTo: tp, License: "GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 0), asm.Return()},
	})
}

// programCost runs the workload once on one CPU with an empty program and
// the tracer both on sched_switch and the kernel's run-time statistics on,
// and returns each program's mean run time per call: their difference is
// what the tracer's own work costs a switch, whatever the machine's load.
func programCost(loops int) (empty, tracer time.Duration, err error) {
	stats, err := ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME))
	if err != nil {
		return 0, 0, err
	}
	defer stats.Close()
	prog, err := emptyProgram("sched_switch")
	if err != nil {
		return 0, 0, err
	}
	defer prog.Close()
	l, err := link.AttachTracing(link.TracingOptions{Program: prog})
	if err != nil {
		return 0, 0, err
	}
	defer l.Close()
	sw, err := collector.NewSchedWatch()
	if err != nil {
		return 0, 0, err
	}
	defer sw.Close()
	if err := sw.Watch(uint32(os.Getpid())); err != nil {
		return 0, 0, err
	}
	if _, err := pingPong(loops, 0); err != nil {
		return 0, 0, err
	}
	perCall := func(p *ebpf.Program) (time.Duration, error) {
		s, err := p.Stats()
		if err != nil {
			return 0, err
		}
		if s.RunCount == 0 {
			return 0, fmt.Errorf("program %v never ran", p)
		}
		return s.Runtime / time.Duration(s.RunCount), nil
	}
	if empty, err = perCall(prog); err != nil {
		return 0, 0, err
	}
	tracer, err = perCall(sw.SwitchProgram())
	return empty, tracer, err
}
