package collector

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"
	"time"
	"unsafe"

	"github.com/probe-dev/probe/collector/dump"
	"golang.org/x/sys/unix"
)

// stampFlags asks the kernel for software receive and transmit timestamps and
// for hardware ones where the NIC has them enabled; OPT_ID numbers transmitted
// datagrams so their timestamps can be matched, OPT_TSONLY keeps the payload
// off the error queue.
const stampFlags = unix.SOF_TIMESTAMPING_RX_SOFTWARE | unix.SOF_TIMESTAMPING_TX_SOFTWARE |
	unix.SOF_TIMESTAMPING_SOFTWARE | unix.SOF_TIMESTAMPING_RX_HARDWARE |
	unix.SOF_TIMESTAMPING_TX_HARDWARE | unix.SOF_TIMESTAMPING_RAW_HARDWARE |
	unix.SOF_TIMESTAMPING_OPT_ID | unix.SOF_TIMESTAMPING_OPT_TSONLY

// Conn is a UDP socket whose datagrams carry kernel timestamps: Recv returns
// the software (and hardware) receive timestamps with a user-space one, and
// TxStamps drains the transmit timestamps from the error queue. One goroutine
// may Recv while another sends; TxStamps must not run concurrently with itself.
type Conn struct {
	uc   *net.UDPConn
	rc   syscall.RawConn
	sent uint32 // datagrams sent so far, i.e. the OPT_ID key of the next one

	rb, sb, eb *batch // recvmmsg, sendmmsg, error queue; made on first use
	gso        bool   // SendBatch sends runs of equal datagrams as one (UseGSO)
	txOff      bool   // software transmit stamps stopped (StopTxStamps)
	rbFn, sbFn func(fd uintptr) bool

	rx struct {
		msg   unix.Msghdr
		iov   unix.Iovec
		name  unix.RawSockaddrAny
		oob   [256]byte
		n     int
		errno syscall.Errno
		fn    func(fd uintptr) bool
	}
}

// Datagram is what Recv read.
type Datagram struct {
	N      int
	From   netip.AddrPort
	Stamps dump.Stamps // sw, hw when present, user always
}

// ListenUDP opens a timestamping UDP socket bound to laddr.
func ListenUDP(ctx context.Context, laddr netip.AddrPort) (*Conn, error) {
	lc := net.ListenConfig{Control: enableStamps}
	pc, err := lc.ListenPacket(ctx, "udp", laddr.String())
	if err != nil {
		return nil, fmt.Errorf("listen udp %s: %w", laddr, err)
	}
	return newConn(pc.(*net.UDPConn))
}

// DialUDP opens a timestamping UDP socket connected to raddr.
func DialUDP(ctx context.Context, raddr netip.AddrPort) (*Conn, error) {
	d := net.Dialer{Control: enableStamps}
	c, err := d.DialContext(ctx, "udp", raddr.String())
	if err != nil {
		return nil, fmt.Errorf("dial udp %s: %w", raddr, err)
	}
	return newConn(c.(*net.UDPConn))
}

// DialUDPFrom is DialUDP from a chosen local address (a fixed port).
func DialUDPFrom(ctx context.Context, laddr, raddr netip.AddrPort) (*Conn, error) {
	d := net.Dialer{Control: enableStamps, LocalAddr: net.UDPAddrFromAddrPort(laddr)}
	c, err := d.DialContext(ctx, "udp", raddr.String())
	if err != nil {
		return nil, fmt.Errorf("dial udp %s from %s: %w", raddr, laddr, err)
	}
	return newConn(c.(*net.UDPConn))
}

func enableStamps(network, address string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_TIMESTAMPING, stampFlags)
	})
	if err == nil {
		err = serr
	}
	if err != nil {
		return fmt.Errorf("enable SO_TIMESTAMPING: %w", err)
	}
	return nil
}

func newConn(uc *net.UDPConn) (*Conn, error) {
	rc, err := uc.SyscallConn()
	if err != nil {
		uc.Close()
		return nil, err
	}
	c := &Conn{uc: uc, rc: rc}
	c.rx.fn = c.recvmsg
	return c, nil
}

// UDP returns the underlying socket, for options and deadlines.
func (c *Conn) UDP() *net.UDPConn { return c.uc }

// LocalAddr is the bound address.
func (c *Conn) LocalAddr() netip.AddrPort { return c.uc.LocalAddr().(*net.UDPAddr).AddrPort() }

// Close closes the socket; a blocked Recv returns.
func (c *Conn) Close() error { return c.uc.Close() }

// SetReadDeadline bounds Recv.
func (c *Conn) SetReadDeadline(t time.Time) error { return c.uc.SetReadDeadline(t) }

// Send writes one datagram (to the connected peer when to is not valid) and
// returns the key its transmit timestamps will carry and the user-space
// monotonic time just before the syscall.
func (c *Conn) Send(b []byte, to netip.AddrPort) (key uint32, user int64, err error) {
	user = MonotonicNow()
	if to.IsValid() {
		_, err = c.uc.WriteToUDPAddrPort(b, to)
	} else {
		_, err = c.uc.Write(b)
	}
	if err != nil {
		return 0, user, err
	}
	key = c.sent
	c.sent++
	return key, user, nil
}

// Recv reads one datagram into b without allocating.
func (c *Conn) Recv(b []byte) (Datagram, error) {
	r := &c.rx
	r.iov.Base = unsafe.SliceData(b)
	r.iov.SetLen(len(b))
	r.msg.Name = (*byte)(unsafe.Pointer(&r.name))
	r.msg.Namelen = uint32(unsafe.Sizeof(r.name))
	r.msg.Iov = &r.iov
	r.msg.SetIovlen(1)
	r.msg.Control = &r.oob[0]
	r.msg.SetControllen(len(r.oob))
	r.msg.Flags = 0
	if err := c.rc.Read(r.fn); err != nil {
		return Datagram{}, err
	}
	var d Datagram
	d.Stamps[dump.SourceUser] = MonotonicNow()
	if r.errno != 0 {
		return d, fmt.Errorf("recvmsg: %w", r.errno)
	}
	d.N = r.n
	d.From = sockaddrAddrPort(&r.name)
	eachCmsg(r.oob[:r.msg.Controllen], func(level, typ int32, data []byte) {
		if level == unix.SOL_SOCKET && typ == unix.SCM_TIMESTAMPING {
			putScmStamps(&d.Stamps, data)
		}
	})
	return d, nil
}

func (c *Conn) recvmsg(fd uintptr) bool {
	n, _, errno := unix.Syscall(unix.SYS_RECVMSG, fd, uintptr(unsafe.Pointer(&c.rx.msg)), 0)
	if errno == unix.EAGAIN {
		return false // wait for the poller
	}
	c.rx.n, c.rx.errno = int(n), errno
	return true
}

// TxStamps drains the transmit timestamps queued so far, without blocking,
// and calls fn with the key Send returned and the kernel timestamps. It reads
// the error queue with recvmmsg, MaxBatch at a time: one syscall per
// timestamp would cost as much as the send itself.
func (c *Conn) TxStamps(fn func(key uint32, s dump.Stamps)) (int, error) {
	if c.eb == nil {
		c.eb = new(batch)
	}
	b := c.eb
	count := 0
	var rerr error
	err := c.rc.Control(func(fd uintptr) {
		for {
			for i := range MaxBatch {
				// Payloads are empty (OPT_TSONLY): the last control byte
				// gives the iovec room to point at.
				b.iovs[i].Base = &b.oobs[i][len(b.oobs[i])-1]
				b.iovs[i].SetLen(1)
				b.hdrs[i] = unix.Mmsghdr{}
				h := &b.hdrs[i].Hdr
				h.Iov = &b.iovs[i]
				h.SetIovlen(1)
				h.Control = &b.oobs[i][0]
				h.SetControllen(len(b.oobs[i]) - 1)
			}
			n, _, errno := unix.Syscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&b.hdrs[0])), MaxBatch,
				unix.MSG_ERRQUEUE|unix.MSG_DONTWAIT, 0, 0)
			if errno == unix.EAGAIN {
				return
			}
			if errno != 0 {
				rerr = fmt.Errorf("read error queue: %w", errno)
				return
			}
			for i := range int(n) {
				if key, st, ok := parseTxStamp(b.oobs[i][:b.hdrs[i].Hdr.Controllen]); ok {
					fn(key, st)
					count++
				}
			}
			if int(n) < MaxBatch {
				return
			}
		}
	})
	if err == nil {
		err = rerr
	}
	return count, err
}

// parseTxStamp reads a transmit timestamp's control messages: the stamps,
// and the OPT_ID key from the extended error that carries them.
func parseTxStamp(oob []byte) (key uint32, st dump.Stamps, ok bool) {
	hdrLen := unix.CmsgLen(0)
	for len(oob) >= hdrLen {
		h := (*unix.Cmsghdr)(unsafe.Pointer(&oob[0]))
		l := int(h.Len)
		if l < hdrLen || l > len(oob) {
			break
		}
		data := oob[hdrLen:l]
		switch {
		case h.Level == unix.SOL_SOCKET && h.Type == unix.SCM_TIMESTAMPING:
			putScmStamps(&st, data)
		case (h.Level == unix.SOL_IP && h.Type == unix.IP_RECVERR) || (h.Level == unix.SOL_IPV6 && h.Type == unix.IPV6_RECVERR):
			if len(data) >= int(unsafe.Sizeof(unix.SockExtendedErr{})) {
				ee := (*unix.SockExtendedErr)(unsafe.Pointer(&data[0]))
				if ee.Origin == unix.SO_EE_ORIGIN_TIMESTAMPING {
					key, ok = ee.Data, true
				}
			}
		}
		next := unix.CmsgSpace(l - hdrLen)
		if next > len(oob) {
			break
		}
		oob = oob[next:]
	}
	return key, st, ok
}

// Sent is the number of datagrams sent, i.e. the keys handed out so far.
func (c *Conn) Sent() uint32 { return c.sent }

// putScmStamps reads struct scm_timestamping: ts[0] software, ts[2] raw hardware.
func putScmStamps(st *dump.Stamps, data []byte) {
	if len(data) < 3*int(unsafe.Sizeof(unix.Timespec{})) {
		return
	}
	ts := (*[3]unix.Timespec)(unsafe.Pointer(&data[0]))
	if ns := ts[0].Nano(); ns != 0 {
		st[dump.SourceSW] = ns
	}
	if ns := ts[2].Nano(); ns != 0 {
		st[dump.SourceHW] = ns
	}
}

// eachCmsg walks control messages without allocating.
func eachCmsg(oob []byte, fn func(level, typ int32, data []byte)) {
	hdrLen := unix.CmsgLen(0)
	for len(oob) >= hdrLen {
		h := (*unix.Cmsghdr)(unsafe.Pointer(&oob[0]))
		l := int(h.Len)
		if l < hdrLen || l > len(oob) {
			return
		}
		fn(h.Level, h.Type, oob[hdrLen:l])
		next := unix.CmsgSpace(l - hdrLen)
		if next > len(oob) {
			return
		}
		oob = oob[next:]
	}
}

func sockaddrAddrPort(sa *unix.RawSockaddrAny) netip.AddrPort {
	switch sa.Addr.Family {
	case unix.AF_INET:
		p := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		port := binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(&p.Port))[:])
		return netip.AddrPortFrom(netip.AddrFrom4(p.Addr), port)
	case unix.AF_INET6:
		p := (*unix.RawSockaddrInet6)(unsafe.Pointer(sa))
		port := binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(&p.Port))[:])
		return netip.AddrPortFrom(netip.AddrFrom16(p.Addr).Unmap(), port)
	}
	return netip.AddrPort{}
}

// MonotonicNow reads CLOCK_MONOTONIC, the clock of eBPF and user timestamps.
func MonotonicNow() int64 { return nanotime() }

// nanotime is the runtime's CLOCK_MONOTONIC, read through the vDSO. x/sys's
// ClockGettime is a real syscall: ~1 µs on a VM, and on its way out the
// runtime may have to find the thread a P again, which made paced sends
// late by tens of µs.
//
//go:linkname nanotime runtime.nanotime
func nanotime() int64

// IsTimeout reports whether err is a deadline expiry.
func IsTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// HoldRxStamps turns software receive timestamping on for the whole host and
// keeps it on until the returned socket is closed. The kernel switches it on
// lazily, from a work queue, when the first socket asks, so the first
// datagrams after that can arrive unstamped; this waits, by sending datagrams
// to itself over loopback, until one arrives stamped.
func HoldRxStamps(ctx context.Context) (*Conn, error) {
	c, err := ListenUDP(ctx, netip.MustParseAddrPort("127.0.0.1:0"))
	if err != nil {
		return nil, fmt.Errorf("hold rx timestamps: %w", err)
	}
	buf := make([]byte, 1)
	deadline := time.Now().Add(time.Second)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if _, _, err := c.Send(buf, c.LocalAddr()); err != nil {
			break
		}
		c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		d, err := c.Recv(buf)
		if err == nil && d.Stamps.Has(dump.SourceSW) {
			c.SetReadDeadline(time.Time{})
			return c, nil
		}
		time.Sleep(time.Millisecond)
	}
	c.Close()
	return nil, errors.New("hold rx timestamps: the kernel did not start stamping received datagrams within 1 s")
}

// UseGSO makes SendBatch hand each run of equal-sized datagrams to the
// kernel as one UDP GSO send (UDP_SEGMENT): one trip down the stack per run
// instead of one per datagram, split into the same datagrams by the device
// or just before it. The kernel then stamps and keys transmits per send,
// not per datagram, so software transmit timestamps are stopped. It fails
// on kernels without UDP GSO (before 4.18).
func (c *Conn) UseGSO() error {
	var serr error
	err := c.rc.Control(func(fd uintptr) {
		_, serr = unix.GetsockoptInt(int(fd), unix.SOL_UDP, unix.UDP_SEGMENT)
	})
	if err == nil {
		err = serr
	}
	if err != nil {
		return fmt.Errorf("UDP GSO: %w", err)
	}
	if err := c.StopTxStamps(); err != nil {
		return err
	}
	c.gso = true
	return nil
}

// GSO says whether SendBatch still sends with UDP GSO: UseGSO was called and
// no send fell back to single datagrams (segments larger than the path MTU).
func (c *Conn) GSO() bool { return c.gso }

// StopTxStamps turns software transmit timestamps off (receive ones stay),
// before the first send. Each costs the kernel a copy of the packet on the
// error queue; when eBPF stamps every packet at TC egress anyway, a
// back-to-back run is better off without them.
func (c *Conn) StopTxStamps() error {
	var serr error
	err := c.rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_TIMESTAMPING,
			stampFlags&^(unix.SOF_TIMESTAMPING_TX_SOFTWARE|unix.SOF_TIMESTAMPING_TX_HARDWARE))
	})
	if err == nil {
		err = serr
	}
	if err != nil {
		return fmt.Errorf("stop transmit timestamps: %w", err)
	}
	c.txOff = true
	return nil
}

// TxStamping says whether sends still get software transmit stamps.
func (c *Conn) TxStamping() bool { return !c.txOff }
