package main

import (
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"

	"github.com/probe-dev/probe/testbed"
	"github.com/urfave/cli/v2"
)

// testbedCommand is `probe testbed`: the embedded network-namespace testbed.
func testbedCommand() *cli.Command {
	nameFlag := &cli.StringFlag{Name: "name", Value: testbed.DefaultName, Usage: "testbed `NAME`; its namespaces are probe-NAME-a, -b and -r"}
	return &cli.Command{
		Name:  "testbed",
		Usage: "build, inspect and remove the network-namespace testbed (needs root)",
		Subcommands: []*cli.Command{
			{
				Name:  "up",
				Usage: "build a testbed: namespaces a and b joined by veth, optionally through a router r, shaped by tbf",
				Flags: []cli.Flag{
					nameFlag,
					&cli.StringFlag{Name: "rate", Usage: "bottleneck `RATE` each way, e.g. 20mbit, 1.5gbit, 100000 (bit/s); unshaped if not given"},
					&cli.UintFlag{Name: "burst", Usage: "tbf bucket in `BYTES` (default: one full frame plus a little slack)"},
					&cli.UintFlag{Name: "limit", Usage: "tbf queue in `BYTES` (default: 64 full frames)"},
					&cli.BoolFlag{Name: "router", Usage: "put a router namespace r between a and b"},
					&cli.IntFlag{Name: "mtu", Value: testbed.DefaultMTU, Usage: "`MTU` of the testbed links"},
				},
				Action: testbedUp,
			},
			{
				Name:  "down",
				Usage: "remove a testbed, or with --all every probe-* namespace (leftovers of crashed runs too)",
				Flags: []cli.Flag{
					nameFlag,
					&cli.BoolFlag{Name: "all", Usage: "remove every probe-* namespace"},
				},
				Action: testbedDown,
			},
			{
				Name:   "status",
				Usage:  "show the testbeds that exist: namespaces, interfaces, addresses, shaping",
				Action: testbedStatus,
			},
			{
				Name:      "exec",
				Usage:     "run a command inside a testbed namespace and exit with its exit code",
				ArgsUsage: "HOST -- CMD [ARGS...]   (HOST: a, b, r or a namespace name)",
				Flags:     []cli.Flag{nameFlag},
				Action:    testbedExec,
			},
		},
	}
}

func testbedUp(c *cli.Context) error {
	if c.NArg() > 0 {
		return fmt.Errorf("testbed up takes no arguments, got %q", c.Args().Slice())
	}
	cfg := testbed.Config{
		Name:   c.String("name"),
		Router: c.Bool("router"),
		MTU:    c.Int("mtu"),
	}
	if s := c.String("rate"); s != "" {
		r, err := testbed.ParseRate(s)
		if err != nil {
			return fmt.Errorf("--rate: %w", err)
		}
		cfg.Rate = r
	}
	for _, f := range []struct {
		name string
		dst  *uint32
	}{{"burst", &cfg.Burst}, {"limit", &cfg.Limit}} {
		v := c.Uint(f.name)
		if v > math.MaxUint32 {
			return fmt.Errorf("--%s %d: too large", f.name, v)
		}
		*f.dst = uint32(v)
	}
	tb, err := testbed.Up(cfg)
	if err != nil {
		return err
	}
	w := c.App.Writer
	topo := "a - b, direct veth"
	if tb.R != nil {
		topo = "a - r - b, through router r"
	}
	fmt.Fprintf(w, "testbed %s up: %s, MTU %d\n", tb.Name, topo, tb.MTU)
	printStatus(w, tb.Status())
	if cfg.Rate > 0 {
		// tbf counts Ethernet frames; capacity estimates are IP-layer figures (docs/capacity.md).
		ip := float64(cfg.Rate) * float64(tb.MTU) / float64(tb.MTU+14)
		fmt.Fprintf(w, "shaped each way at %s of Ethernet frames: %.4g Mbit/s at the IP layer for full-size packets\n",
			testbed.FormatRate(cfg.Rate), ip/1e6)
	} else {
		fmt.Fprintln(w, "unshaped")
	}
	fmt.Fprintf(w, "run a command inside: probe testbed exec --name %s a -- CMD\n", tb.Name)
	return nil
}

func testbedDown(c *cli.Context) error {
	if c.NArg() > 0 {
		return fmt.Errorf("testbed down takes no arguments, got %q", c.Args().Slice())
	}
	if c.Bool("all") {
		removed, err := testbed.DownAll()
		for _, ns := range removed {
			fmt.Fprintf(c.App.Writer, "removed %s\n", ns)
		}
		if err == nil && len(removed) == 0 {
			fmt.Fprintln(c.App.Writer, "no probe-* namespaces")
		}
		return err
	}
	tb, err := testbed.Open(c.String("name"))
	if errors.Is(err, testbed.ErrNoTestbed) {
		return err
	}
	if err != nil {
		return fmt.Errorf("%w (down --all removes broken testbeds)", err)
	}
	if err := tb.Down(); err != nil {
		return err
	}
	fmt.Fprintf(c.App.Writer, "testbed %s down\n", tb.Name)
	return nil
}

func testbedStatus(c *cli.Context) error {
	sts, err := testbed.List()
	if err != nil {
		return err
	}
	if len(sts) == 0 {
		fmt.Fprintln(c.App.Writer, "no testbeds")
	}
	for _, st := range sts {
		fmt.Fprintf(c.App.Writer, "testbed %s\n", st.Name)
		printStatus(c.App.Writer, st)
	}
	if err := testbed.Netem(); err != nil {
		fmt.Fprintf(c.App.Writer, "netem: unavailable, %v: testbeds shape with tbf, with no emulated delay or loss\n", err)
	} else {
		fmt.Fprintln(c.App.Writer, "netem: available")
	}
	return nil
}

// printStatus writes one line per interface, as read back from the kernel.
func printStatus(w io.Writer, st testbed.Status) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  HOST\tNAMESPACE\tINTERFACE\tSTATE\tADDRESS\tQDISC\tOFFLOADS")
	for _, h := range st.Hosts {
		host := h.Name
		if host == "" {
			host = "?"
		}
		if h.Err != nil {
			fmt.Fprintf(tw, "  %s\t%s\terror: %v\n", host, h.NS, h.Err)
			continue
		}
		if len(h.Ifaces) == 0 {
			fmt.Fprintf(tw, "  %s\t%s\t-\t-\t-\t-\t-\n", host, h.NS)
		}
		for _, ifc := range h.Ifaces {
			state := "down"
			if ifc.Up {
				state = "up"
			}
			var addrs []string
			for _, a := range ifc.Addrs {
				addrs = append(addrs, a.String())
			}
			if len(addrs) == 0 {
				addrs = []string{"-"}
			}
			off := "off"
			if len(ifc.OffloadsOn) > 0 {
				off = "on: " + strings.Join(ifc.OffloadsOn, ",")
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%s\t%s\n", host, h.NS, ifc.Name, state, strings.Join(addrs, ","), ifc.Qdisc, off)
		}
	}
	tw.Flush()
}

func testbedExec(c *cli.Context) error {
	args := c.Args().Slice()
	if len(args) > 0 && args[0] == "--" {
		args = args[1:]
	}
	if len(args) > 1 && args[1] == "--" {
		args = append(args[:1], args[2:]...)
	}
	if len(args) < 2 {
		return errors.New("testbed exec: want HOST -- CMD [ARGS...]")
	}
	if err := testbed.CheckPrivileges(); err != nil {
		return err
	}
	host, err := execHost(c.String("name"), args[0])
	if err != nil {
		return err
	}
	code, err := runIn(host, args[1], args[2:])
	if err != nil {
		return err
	}
	if code != 0 {
		return cli.Exit("", code) // the command's own status, and it has said why
	}
	return nil
}

// runIn runs name with args inside host's namespace, stdio passed through, and returns its
// exit status, 128+signal when a signal ended it.
func runIn(host *testbed.Host, name string, args []string) (int, error) {
	cmd := exec.Command(name, args...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr

	// The terminal sends SIGINT and SIGQUIT to the child too: only outlive them. SIGTERM
	// and SIGHUP are meant for us alone: pass them on.
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGQUIT, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)
	if err := host.Start(cmd); err != nil {
		return 0, fmt.Errorf("testbed exec: %w", err)
	}
	done := make(chan struct{})
	defer close(done)
	go func() {
		for {
			select {
			case s := <-sigs:
				if s == syscall.SIGTERM || s == syscall.SIGHUP {
					cmd.Process.Signal(s)
				}
			case <-done:
				return
			}
		}
	}()
	err := cmd.Wait()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return 128 + int(ws.Signal()), nil
		}
		return ee.ExitCode(), nil
	}
	if err != nil {
		return 0, fmt.Errorf("testbed exec %s: %w", name, err)
	}
	return 0, nil
}

// execHost resolves HOST: a testbed host name, else a namespace under /run/netns.
func execHost(name, host string) (*testbed.Host, error) {
	switch host {
	case "a", "b", "r":
		tb, err := testbed.Open(name)
		if err != nil {
			return nil, err
		}
		return tb.Host(host)
	}
	if strings.ContainsRune(host, '/') || host == "." || host == ".." {
		return nil, fmt.Errorf("testbed exec: bad host %q: want a, b, r or a namespace name", host)
	}
	if _, err := os.Stat("/run/netns/" + host); err != nil {
		return nil, fmt.Errorf("testbed exec: no host %q: want a, b, r or a namespace in /run/netns", host)
	}
	return &testbed.Host{Name: host, NS: host}, nil
}
