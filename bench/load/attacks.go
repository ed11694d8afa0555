package main

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/probe-dev/probe/probe"
	"github.com/vmihailenco/msgpack/v5"
	"golang.org/x/sys/unix"
)

// Frames by hand, as a stranger would write them: a 4-byte big-endian
// length, then msgpack of one message. frame has only the messages the
// bench sends or looks for; the decoder skips the rest of a message.
type frame struct {
	Hello    *hello       `msgpack:"hello,omitempty"`
	StartTLS *struct{}    `msgpack:"start_tls,omitempty"`
	Auth     *auth        `msgpack:"auth,omitempty"`
	Welcome  *struct{}    `msgpack:"welcome,omitempty"`
	Open     *open        `msgpack:"open,omitempty"`
	Error    *probe.Error `msgpack:"error,omitempty"`
}

type hello struct {
	Version int    `msgpack:"version"`
	Client  string `msgpack:"client"`
}

type auth struct {
	MAC []byte `msgpack:"mac"`
}

type open struct {
	Mode probe.Mode       `msgpack:"mode"`
	Run  *probe.RunParams `msgpack:"run,omitempty"`
}

func writeFrame(w io.Writer, m *frame) error {
	body, err := msgpack.Marshal(m)
	if err != nil {
		return err
	}
	_, err = w.Write(append(binary.BigEndian.AppendUint32(nil, uint32(len(body))), body...))
	return err
}

func readFrame(r io.Reader) (*frame, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	body := make([]byte, min(binary.BigEndian.Uint32(hdr[:]), 1<<20))
	if _, err := io.ReadFull(r, body); err != nil {
		return nil, err
	}
	m := new(frame)
	return m, msgpack.Unmarshal(body, m)
}

// sourceAddr is the i-th loopback address of a /16, for connections that
// must each come from their own address.
func sourceAddr(net16 byte, i int) netip.Addr {
	return netip.AddrFrom4([4]byte{127, net16, byte(i / 250), byte(i%250 + 1)})
}

func dialFrom(ctx context.Context, to netip.AddrPort, from netip.Addr) (net.Conn, error) {
	d := net.Dialer{LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(from, 0)), Timeout: 5 * time.Second}
	return d.DialContext(ctx, "tcp", to.String())
}

// genuine is one well-behaved client after an attack: an echo session.
func (b *bench) genuine(ctx context.Context) error {
	c, err := probe.Dial(ctx, b.agent.addr.String(), b.clientConfig(netip.MustParseAddr("127.0.0.1")))
	if err != nil {
		return err
	}
	defer c.Close()
	_, err = c.Echo(ctx, probe.EchoParams{Count: 20, Size: 64, Interval: time.Millisecond}, probe.EchoOptions{Wait: time.Second})
	return err
}

const burstConns = 300

// burst opens burstConns connections, each from its own address, that say
// nothing, and sorts out how each ended; then a genuine client measures.
func (b *bench) burst(ctx context.Context) result {
	var mu sync.Mutex
	errs := map[string]int{}
	note := func(k string) { mu.Lock(); errs[k]++; mu.Unlock() }
	var wg sync.WaitGroup
	for i := range burstConns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := dialFrom(ctx, b.agent.addr, sourceAddr(2, i))
			if err != nil {
				note(unexplainedPrefix + "dial: " + err.Error())
				return
			}
			defer c.Close()
			start := time.Now()
			c.SetReadDeadline(time.Now().Add(15 * time.Second)) // past the agent's 10 s handshake timeout
			m, err := readFrame(c)
			switch {
			case err == nil && m.Error != nil:
				note(explain(m.Error))
			case errors.Is(err, io.EOF) && time.Since(start) > 9*time.Second:
				note("closed by the agent at its --handshake-timeout")
			case errors.Is(err, io.EOF) || errors.Is(err, unix.ECONNRESET):
				note("closed at once: more than 32 refusals at a time are not told why")
			default:
				note(unexplainedPrefix + fmt.Sprint(err))
			}
		}()
	}
	wg.Wait()
	return b.genuineAfter(ctx, errs)
}

func (b *bench) genuineAfter(ctx context.Context, errs map[string]int) result {
	res := result{clients: "genuine client after: ok", errors: errs}
	if err := b.genuine(ctx); err != nil {
		res.clients = "genuine client after: failed"
		res.errors[explain(err)]++
		res.failed = true
	}
	return res
}

// relayInjection puts a relay between a genuine client with the key and
// the agent; once the client is in, the relay injects an Open of a run
// session that would create a file.
func (b *bench) relayInjection(ctx context.Context) result {
	marker := filepath.Join(b.dir, "injected")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return result{clients: "–", errors: map[string]int{unexplainedPrefix + err.Error(): 1}, failed: true}
	}
	defer ln.Close()
	toAgent := make(chan net.Conn, 1)
	var wmu sync.Mutex
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		a, err := net.Dial("tcp", b.agent.addr.String())
		if err != nil {
			return
		}
		defer a.Close()
		toAgent <- a
		go io.Copy(c, a)
		buf := make([]byte, 32<<10)
		for {
			n, err := c.Read(buf)
			if n > 0 {
				wmu.Lock()
				a.Write(buf[:n])
				wmu.Unlock()
			}
			if err != nil {
				return
			}
		}
	}()
	c, err := probe.Dial(ctx, ln.Addr().String(), probe.ClientConfig{Key: b.key})
	if err != nil {
		return result{clients: "–", errors: map[string]int{explain(err): 1}, failed: true}
	}
	defer c.Close()
	a := <-toAgent
	wmu.Lock()
	writeFrame(a, &frame{Open: &open{Mode: probe.ModeRun, Run: &probe.RunParams{Path: "sh", Args: []string{"-c", "id > " + marker}}}})
	wmu.Unlock()
	time.Sleep(time.Second)
	res := result{clients: "injected command ran: no", errors: map[string]int{}}
	if _, err := os.Stat(marker); err == nil {
		res.clients, res.failed = "injected command ran: YES", true
	}
	if _, err := c.Echo(ctx, probe.EchoParams{Count: 5, Size: 64}, probe.EchoOptions{Wait: time.Second}); err != nil {
		res.errors["the relayed client's connection ended: the injected bytes failed TLS's integrity check"]++
	} else {
		res.errors[unexplainedPrefix+"the relayed connection survived the injection"]++
		res.failed = true
	}
	return res
}

// exhaustFDs lowers the agent's descriptor limit to a few above what it
// holds, opens connections past it, lets them go, restores the limit and
// has a genuine client measure.
func (b *bench) exhaustFDs(ctx context.Context) result {
	pid := b.agent.cmd.Process.Pid
	f, _ := b.agent.sample()
	var old unix.Rlimit
	low := unix.Rlimit{Cur: uint64(f.fds + 20), Max: 0}
	if err := unix.Prlimit(pid, unix.RLIMIT_NOFILE, nil, &old); err != nil {
		return result{clients: "–", errors: map[string]int{unexplainedPrefix + err.Error(): 1}, failed: true}
	}
	low.Max = old.Max
	if err := unix.Prlimit(pid, unix.RLIMIT_NOFILE, &low, nil); err != nil {
		return result{clients: "–", errors: map[string]int{unexplainedPrefix + err.Error(): 1}, failed: true}
	}
	b.cmds = append(b.cmds, fmt.Sprintf("prlimit --pid AGENT --nofile=%d:%d (then back to %d)", low.Cur, low.Max, old.Cur))
	failedBefore := b.agent.count("accept failed")
	var conns []net.Conn
	for i := range 200 {
		c, err := dialFrom(ctx, b.agent.addr, sourceAddr(3, i))
		if err == nil {
			conns = append(conns, c)
		}
	}
	time.Sleep(2 * time.Second)
	retries := b.agent.count("accept failed") - failedBefore
	for _, c := range conns {
		c.Close()
	}
	unix.Prlimit(pid, unix.RLIMIT_NOFILE, &old, nil)
	time.Sleep(500 * time.Millisecond) // the backlog of closed connections drains
	errs := map[string]int{}
	if retries > 0 {
		errs[fmt.Sprintf("accept out of descriptors (EMFILE), %d retries with back-off in 2 s", retries)] = len(conns)
	}
	if !b.agent.alive() {
		return result{clients: "agent died", errors: errs, failed: true}
	}
	res := b.genuineAfter(ctx, errs)
	res.clients = fmt.Sprintf("%d connections past the limit; %s", len(conns), res.clients)
	return res
}

// privilegedSockOpts asks for the options an unauthenticated client could
// set on the agent's sockets before: each must be refused.
func (b *bench) privilegedSockOpts(ctx context.Context) result {
	errs := map[string]int{}
	refused := 0
	opts := []string{"SO_SNDBUFFORCE=1000000000", "SO_MARK=1", "ip.19=1"} // ip.19: IP_TRANSPARENT
	for _, o := range opts {
		c, err := probe.Dial(ctx, b.agent.addr.String(), b.clientConfig(netip.MustParseAddr("127.0.0.1")))
		if err != nil {
			errs[explain(err)]++
			continue
		}
		_, err = c.TCP(ctx, probe.TCPParams{Streams: 1, Direction: probe.DirForward, Bytes: 1 << 20, WriteSize: 64 << 10,
			Interval: 100 * time.Millisecond, SockOpts: []string{o}, GetOpts: []string{strings.Split(o, "=")[0]}})
		c.Close()
		var e *probe.Error
		if errors.As(err, &e) && e.Code == probe.CodeSockOpt {
			refused++
			errs["refused: not on the allow-list (serve --allow-sockopt)"]++
		} else {
			errs[unexplainedPrefix+fmt.Sprintf("%s: %v", o, err)]++
		}
	}
	return result{clients: fmt.Sprintf("%d of %d refused", refused, len(opts)), errors: errs, failed: refused != len(opts)}
}

// hugeArray sends the 26-byte frame {"stamps": {"records": <array32 of
// 2^32-1>}}: before authentication, then inside an authenticated
// connection.
func (b *bench) hugeArray(ctx context.Context) result {
	body := []byte{0x81, 0xa6, 's', 't', 'a', 'm', 'p', 's', 0x81, 0xa7, 'r', 'e', 'c', 'o', 'r', 'd', 's', 0xdd, 0xff, 0xff, 0xff, 0xff}
	frame := append(binary.BigEndian.AppendUint32(nil, uint32(len(body))), body...)
	errs := map[string]int{}
	res := result{errors: errs}
	c, err := net.Dial("tcp", b.agent.addr.String())
	if err != nil {
		errs[unexplainedPrefix+err.Error()]++
		res.failed = true
		return res
	}
	c.SetDeadline(time.Now().Add(5 * time.Second))
	c.Write(frame)
	m, err := readFrame(c)
	c.Close()
	if err == nil && m.Error != nil && m.Error.Code == probe.CodeMalformed {
		errs["before authentication: refused as malformed (only hello is decoded)"]++
	} else {
		errs[unexplainedPrefix+fmt.Sprintf("before authentication: %v %v", m, err)]++
		res.failed = true
	}
	tc, err := b.authenticated(ctx)
	if err != nil {
		errs[unexplainedPrefix+"authenticate: "+err.Error()]++
		res.failed = true
		return res
	}
	defer tc.Close()
	tc.SetDeadline(time.Now().Add(10 * time.Second))
	tc.Write(frame)
	m, err = readFrame(tc)
	select {
	case <-b.agent.done:
	case <-time.After(time.Second):
	}
	switch {
	case !b.agent.alive():
		errs["after authentication: the agent died ("+b.agent.first("fatal error")+"); the decoder's bound on declared lengths is another branch's fix"]++
		res.failed = true
	case err == nil && m.Error != nil:
		errs["after authentication: refused: "+m.Error.Message]++
	default:
		errs[fmt.Sprintf("after authentication: the agent hung up (%v)", err)]++
	}
	res.clients = "agent alive: yes"
	if !b.agent.alive() {
		res.clients = "agent alive: NO"
	}
	return res
}

// authenticated does the client's handshake by hand, so that the bench can
// then write any frame in the TLS session.
func (b *bench) authenticated(ctx context.Context) (*tls.Conn, error) {
	c, err := net.Dial("tcp", b.agent.addr.String())
	if err != nil {
		return nil, err
	}
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if err := writeFrame(c, &frame{Hello: &hello{Version: probe.ProtocolVersion, Client: "bench"}}); err != nil {
		c.Close()
		return nil, err
	}
	if m, err := readFrame(c); err != nil || m.StartTLS == nil {
		c.Close()
		return nil, fmt.Errorf("no start_tls: %v", err)
	}
	tc := tls.Client(c, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"probe-control/3"}})
	if err := tc.HandshakeContext(ctx); err != nil {
		c.Close()
		return nil, err
	}
	cs := tc.ConnectionState()
	ekm, err := cs.ExportKeyingMaterial("EXPORTER-probe-control-v3", nil, 32)
	if err != nil {
		tc.Close()
		return nil, err
	}
	h := hmac.New(sha256.New, b.key)
	h.Write([]byte("probe client v3"))
	h.Write(ekm)
	if err := writeFrame(tc, &frame{Auth: &auth{MAC: h.Sum(nil)}}); err != nil {
		tc.Close()
		return nil, err
	}
	if m, err := readFrame(tc); err != nil || m.Welcome == nil {
		tc.Close()
		return nil, fmt.Errorf("no welcome: %v %v", m, err)
	}
	return tc, nil
}
