package collector

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"syscall"
	"unsafe"

	"github.com/probe-dev/probe/collector/dump"
	"golang.org/x/sys/unix"
)

// MaxBatch is the most datagrams one RecvBatch or SendBatch moves.
const MaxBatch = 64

// batch holds the reusable headers of recvmmsg and sendmmsg.
type batch struct {
	hdrs  [MaxBatch]unix.Mmsghdr
	iovs  [MaxBatch]unix.Iovec
	names [MaxBatch]unix.RawSockaddrAny
	oobs  [MaxBatch][128]byte
	n     int
	errno syscall.Errno
}

// RecvBatch reads up to len(bufs) datagrams (at most MaxBatch) with one
// recvmmsg, waiting for the first, and fills out[:n] like Recv does. Their
// user-space stamp is one clock read after the syscall.
func (c *Conn) RecvBatch(bufs [][]byte, out []Datagram) (int, error) {
	if c.rb == nil {
		c.rb = new(batch)
		c.rbFn = c.recvmmsg
	}
	b := c.rb
	n := min(len(bufs), len(out), MaxBatch)
	for i := range n {
		b.iovs[i].Base = unsafe.SliceData(bufs[i])
		b.iovs[i].SetLen(len(bufs[i]))
		h := &b.hdrs[i].Hdr
		h.Name = (*byte)(unsafe.Pointer(&b.names[i]))
		h.Namelen = uint32(unsafe.Sizeof(b.names[i]))
		h.Iov = &b.iovs[i]
		h.SetIovlen(1)
		h.Control = &b.oobs[i][0]
		h.SetControllen(len(b.oobs[i]))
		h.Flags = 0
		b.hdrs[i].Len = 0
	}
	b.n = n
	if err := c.rc.Read(c.rbFn); err != nil {
		return 0, err
	}
	user := MonotonicNow()
	if b.errno != 0 {
		return 0, fmt.Errorf("recvmmsg: %w", b.errno)
	}
	for i := range b.n {
		d := &out[i]
		*d = Datagram{N: int(b.hdrs[i].Len), From: sockaddrAddrPort(&b.names[i])}
		d.Stamps[dump.SourceUser] = user
		h := &b.hdrs[i].Hdr
		eachCmsg(b.oobs[i][:h.Controllen], func(level, typ int32, data []byte) {
			if level == unix.SOL_SOCKET && typ == unix.SCM_TIMESTAMPING {
				putScmStamps(&d.Stamps, data)
			}
		})
	}
	return b.n, nil
}

func (c *Conn) recvmmsg(fd uintptr) bool {
	b := c.rb
	r, _, errno := unix.Syscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&b.hdrs[0])), uintptr(b.n), 0, 0, 0)
	if errno == unix.EAGAIN {
		return false
	}
	b.n, b.errno = int(r), errno
	return true
}

// SendBatch sends the datagrams back to back with sendmmsg (to the connected
// peer when to is not valid). It returns the transmit key of the first one
// sent (the rest follow in order; with UseGSO keys count sends, not
// datagrams), the user-space time before the first syscall, and how many
// datagrams were sent.
func (c *Conn) SendBatch(bufs [][]byte, to netip.AddrPort) (first uint32, user int64, n int, err error) {
	if c.sb == nil {
		c.sb = new(batch)
		c.sbFn = c.sendmmsg
	}
	b := c.sb
	var namelen uint32
	if to.IsValid() {
		namelen = putSockaddr(&b.names[0], to, c.LocalAddr().Addr().Is6())
	}
	first, user = c.sent, MonotonicNow()
	var counts [MaxBatch]int // datagrams in each message
	for n < len(bufs) {
		// Fill messages until MaxBatch datagrams (iovecs) are placed.
		msgs, placed := 0, 0
		for n+placed < len(bufs) && placed < MaxBatch {
			k := 1
			if c.gso {
				k = gsoRun(bufs[n+placed:], MaxBatch-placed)
			}
			for i := range k {
				buf := bufs[n+placed+i]
				b.iovs[placed+i].Base = unsafe.SliceData(buf)
				b.iovs[placed+i].SetLen(len(buf))
			}
			b.hdrs[msgs] = unix.Mmsghdr{}
			h := &b.hdrs[msgs].Hdr
			h.Iov = &b.iovs[placed]
			h.SetIovlen(k)
			if namelen > 0 {
				h.Name, h.Namelen = (*byte)(unsafe.Pointer(&b.names[0])), namelen
			}
			if k > 1 {
				h.Control = &b.oobs[msgs][0]
				h.SetControllen(putSegmentCmsg(b.oobs[msgs][:], len(bufs[n+placed])))
			}
			counts[msgs] = k
			msgs++
			placed += k
		}
		b.n = msgs
		if err := c.rc.Write(c.sbFn); err != nil {
			return first, user, n, err
		}
		if (b.errno == unix.EMSGSIZE || b.errno == unix.EINVAL) && c.gso && msgs < placed {
			// A GSO send's segments must each fit the path's MTU, where
			// single datagrams would be fragmented: send them singly.
			c.gso = false
			continue
		}
		if b.errno != 0 {
			return first, user, n, fmt.Errorf("sendmmsg: %w", b.errno)
		}
		if b.n == 0 {
			break
		}
		for _, k := range counts[:b.n] {
			n += k
		}
		c.sent += uint32(b.n) // the kernel keys sends
	}
	return first, user, n, nil
}

// A GSO send carries at most gsoMaxSegments (older kernels'
// UDP_MAX_SEGMENTS) and one IP packet's UDP payload.
const (
	gsoMaxSegments = 64
	gsoMaxBytes    = 65507 - 8
)

// gsoRun returns how many of bufs, at most limit, one GSO send can carry:
// datagrams of the first one's size, the last of them possibly shorter.
func gsoRun(bufs [][]byte, limit int) int {
	size := len(bufs[0])
	if size == 0 {
		return 1
	}
	// Every datagram is at most size, so this also bounds the bytes.
	limit = min(limit, len(bufs), gsoMaxSegments, gsoMaxBytes/size)
	k := 1
	for k < limit {
		n := len(bufs[k])
		if n == 0 || n > size {
			break
		}
		k++
		if n < size {
			break // a shorter one ends the run
		}
	}
	return k
}

// putSegmentCmsg writes a UDP_SEGMENT control message of the given segment
// size into oob and returns its length.
func putSegmentCmsg(oob []byte, size int) int {
	h := (*unix.Cmsghdr)(unsafe.Pointer(&oob[0]))
	h.Level, h.Type = unix.SOL_UDP, unix.UDP_SEGMENT
	h.SetLen(unix.CmsgLen(2))
	*(*uint16)(unsafe.Pointer(&oob[unix.CmsgLen(0)])) = uint16(size)
	return unix.CmsgSpace(2)
}

func (c *Conn) sendmmsg(fd uintptr) bool {
	b := c.sb
	r, _, errno := unix.Syscall6(unix.SYS_SENDMMSG, fd, uintptr(unsafe.Pointer(&b.hdrs[0])), uintptr(b.n), 0, 0, 0)
	if errno == unix.EAGAIN {
		return false
	}
	b.n, b.errno = int(r), errno
	return true
}

// putSockaddr writes ap as a sockaddr for a socket of the given family and
// returns its length.
func putSockaddr(sa *unix.RawSockaddrAny, ap netip.AddrPort, six bool) uint32 {
	var port [2]byte
	binary.BigEndian.PutUint16(port[:], ap.Port())
	if six {
		p := (*unix.RawSockaddrInet6)(unsafe.Pointer(sa))
		*p = unix.RawSockaddrInet6{Family: unix.AF_INET6, Addr: ap.Addr().As16()}
		p.Port = *(*uint16)(unsafe.Pointer(&port))
		return uint32(unsafe.Sizeof(*p))
	}
	p := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
	*p = unix.RawSockaddrInet4{Family: unix.AF_INET, Addr: ap.Addr().Unmap().As4()}
	p.Port = *(*uint16)(unsafe.Pointer(&port))
	return uint32(unsafe.Sizeof(*p))
}
