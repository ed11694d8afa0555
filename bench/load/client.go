package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"time"

	"github.com/probe-dev/probe/probe"
)

// clientArg makes this binary a client that runs one mode's session until
// it is killed: load client MODE ADDR KEYFILE.
const clientArg = "client"

func runClient(args []string) {
	if len(args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: load client MODE ADDR KEYFILE")
		os.Exit(2)
	}
	mode, addr := probe.Mode(args[0]), args[1]
	key, err := os.ReadFile(args[2])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	ctx := context.Background()
	c, err := probe.Dial(ctx, addr, probe.ClientConfig{Key: key})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	switch mode {
	case probe.ModeEcho:
		_, err = c.Echo(ctx, probe.EchoParams{Count: 1_000_000, Size: 64, Interval: 100 * time.Microsecond}, probe.EchoOptions{Wait: time.Second})
	case probe.ModeCapacity:
		// A run may fail on a loaded host; the next keeps a session open
		// until the kill.
		for {
			if c == nil {
				if c, err = probe.Dial(ctx, addr, probe.ClientConfig{Key: key}); err != nil {
					c = nil
					time.Sleep(100 * time.Millisecond)
					continue
				}
			}
			if _, err = c.Capacity(ctx, probe.CapacityConfig{}); err != nil {
				c.Close()
				c = nil
			}
		}
	case probe.ModeTCP:
		_, err = c.TCP(ctx, probe.TCPParams{Streams: 4, Direction: probe.DirBidir, Duration: time.Minute, WriteSize: 64 << 10, Interval: 50 * time.Millisecond})
	case probe.ModeQUIC:
		_, err = c.QUIC(ctx, probe.QUICParams{Streams: 4, Direction: probe.DirBidir, Duration: time.Minute, WriteSize: 64 << 10,
			Interval: 50 * time.Millisecond, Pings: 5, PingEvery: 10 * time.Millisecond}, probe.QUICTrust{})
	case probe.ModeRun:
		var p *probe.RemoteProcess
		if p, err = c.Run(ctx, probe.RunParams{Path: "sleep", Args: []string{"120"}}); err == nil {
			_, err = p.Wait()
		}
	default:
		err = fmt.Errorf("unknown mode %q", mode)
	}
	fmt.Fprintln(os.Stderr, mode, err)
	os.Exit(3)
}

// killClient starts a client of mode in its own process, lets it run its
// session a while, and kills it with SIGKILL.
func (b *bench) killClient(ctx context.Context, mode probe.Mode) result {
	self, err := os.Executable()
	if err != nil {
		return result{clients: "–", errors: map[string]int{unexplainedPrefix + err.Error(): 1}, failed: true}
	}
	cmd := exec.CommandContext(ctx, self, clientArg, string(mode), b.agent.addr.String(), b.keyFile)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return result{clients: "–", errors: map[string]int{unexplainedPrefix + err.Error(): 1}, failed: true}
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	select {
	case err := <-exited:
		return result{clients: "client ended by itself", errors: map[string]int{unexplainedPrefix + fmt.Sprint(err): 1}, failed: true}
	case <-time.After(2 * time.Second): // mid-session
	}
	cmd.Process.Signal(syscall.SIGKILL)
	<-exited
	return result{clients: "1 killed mid-session", errors: map[string]int{}}
}
