package collector

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// SocketOptions are the per-socket settings an echo measurement may ask for;
// zero values leave the kernel's defaults.
type SocketOptions struct {
	RcvBuf, SndBuf int // bytes (the kernel doubles them and caps them at rmem_max/wmem_max)
	DSCP           int // 0..63, in the IP TOS / traffic class byte
	TTL            int // IP TTL / IPv6 hop limit
}

// Apply sets the options on c and reads the buffer sizes back, since the
// kernel silently caps them.
func (c *Conn) Apply(o SocketOptions) (rcv, snd int, err error) {
	six := !c.LocalAddr().Addr().Is4()
	var serr error
	set := func(fd int, level, opt, v int, name string) {
		if serr == nil && v != 0 {
			if e := unix.SetsockoptInt(fd, level, opt, v); e != nil {
				serr = fmt.Errorf("set %s=%d: %w", name, v, e)
			}
		}
	}
	err = c.rc.Control(func(fd uintptr) {
		f := int(fd)
		set(f, unix.SOL_SOCKET, unix.SO_RCVBUF, o.RcvBuf, "SO_RCVBUF")
		set(f, unix.SOL_SOCKET, unix.SO_SNDBUF, o.SndBuf, "SO_SNDBUF")
		if six {
			set(f, unix.IPPROTO_IPV6, unix.IPV6_TCLASS, o.DSCP<<2, "IPV6_TCLASS")
			set(f, unix.IPPROTO_IPV6, unix.IPV6_UNICAST_HOPS, o.TTL, "IPV6_UNICAST_HOPS")
		} else {
			set(f, unix.IPPROTO_IP, unix.IP_TOS, o.DSCP<<2, "IP_TOS")
			set(f, unix.IPPROTO_IP, unix.IP_TTL, o.TTL, "IP_TTL")
		}
		if serr == nil {
			rcv, serr = unix.GetsockoptInt(f, unix.SOL_SOCKET, unix.SO_RCVBUF)
		}
		if serr == nil {
			snd, serr = unix.GetsockoptInt(f, unix.SOL_SOCKET, unix.SO_SNDBUF)
		}
	})
	if err == nil {
		err = serr
	}
	return rcv, snd, err
}

// Drops is how many datagrams the kernel dropped because this socket's
// receive buffer was full: sk_drops, the counter SO_RXQ_OVFL reports, read
// from /proc/net/udp (or udp6) by the socket's inode, so that drops after the
// last datagram read are counted too. It reads the caller's network
// namespace's table.
func (c *Conn) Drops() (uint64, error) {
	var st unix.Stat_t
	var serr error
	if err := c.rc.Control(func(fd uintptr) { serr = unix.Fstat(int(fd), &st) }); err != nil {
		return 0, err
	}
	if serr != nil {
		return 0, fmt.Errorf("stat socket: %w", serr)
	}
	inode := strconv.FormatUint(st.Ino, 10)
	for _, table := range []string{"/proc/thread-self/net/udp", "/proc/thread-self/net/udp6"} {
		if d, ok, err := udpDrops(table, inode); err != nil || ok {
			return d, err
		}
	}
	return 0, fmt.Errorf("socket inode %s not in /proc/net/udp", inode)
}

// udpDrops finds inode in a /proc/net/udp table; drops is its last column.
func udpDrops(path, inode string) (uint64, bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, false, fmt.Errorf("read socket drops: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		// sl local rem st tx:rx tr:when retrnsmt uid timeout inode ref pointer drops
		if len(fields) >= 13 && fields[9] == inode {
			d, err := strconv.ParseUint(fields[len(fields)-1], 10, 64)
			return d, true, err
		}
	}
	return 0, false, sc.Err()
}
