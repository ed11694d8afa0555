package collector

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// SockOpt is a socket option named on the command line, with the value to
// set (Value, or StrValue when Str).
type SockOpt struct {
	Name       string
	Level, Opt int
	Str        bool // string-valued, e.g. TCP_CONGESTION
	Value      int
	StrValue   string
}

type sockOptKey struct{ level, opt int }

var knownSockOpts = map[string]SockOpt{
	"SO_RCVBUF":                {Level: unix.SOL_SOCKET, Opt: unix.SO_RCVBUF},
	"SO_SNDBUF":                {Level: unix.SOL_SOCKET, Opt: unix.SO_SNDBUF},
	"SO_RCVBUFFORCE":           {Level: unix.SOL_SOCKET, Opt: unix.SO_RCVBUFFORCE},
	"SO_SNDBUFFORCE":           {Level: unix.SOL_SOCKET, Opt: unix.SO_SNDBUFFORCE},
	"SO_KEEPALIVE":             {Level: unix.SOL_SOCKET, Opt: unix.SO_KEEPALIVE},
	"SO_REUSEADDR":             {Level: unix.SOL_SOCKET, Opt: unix.SO_REUSEADDR},
	"SO_REUSEPORT":             {Level: unix.SOL_SOCKET, Opt: unix.SO_REUSEPORT},
	"SO_PRIORITY":              {Level: unix.SOL_SOCKET, Opt: unix.SO_PRIORITY},
	"SO_MARK":                  {Level: unix.SOL_SOCKET, Opt: unix.SO_MARK},
	"SO_RCVLOWAT":              {Level: unix.SOL_SOCKET, Opt: unix.SO_RCVLOWAT},
	"SO_BUSY_POLL":             {Level: unix.SOL_SOCKET, Opt: unix.SO_BUSY_POLL},
	"SO_MAX_PACING_RATE":       {Level: unix.SOL_SOCKET, Opt: unix.SO_MAX_PACING_RATE},
	"SO_INCOMING_CPU":          {Level: unix.SOL_SOCKET, Opt: unix.SO_INCOMING_CPU},
	"SO_ZEROCOPY":              {Level: unix.SOL_SOCKET, Opt: unix.SO_ZEROCOPY},
	"IP_TOS":                   {Level: unix.IPPROTO_IP, Opt: unix.IP_TOS},
	"IP_TTL":                   {Level: unix.IPPROTO_IP, Opt: unix.IP_TTL},
	"IPV6_TCLASS":              {Level: unix.IPPROTO_IPV6, Opt: unix.IPV6_TCLASS},
	"IPV6_UNICAST_HOPS":        {Level: unix.IPPROTO_IPV6, Opt: unix.IPV6_UNICAST_HOPS},
	"TCP_NODELAY":              {Level: unix.IPPROTO_TCP, Opt: unix.TCP_NODELAY},
	"TCP_MAXSEG":               {Level: unix.IPPROTO_TCP, Opt: unix.TCP_MAXSEG},
	"TCP_CORK":                 {Level: unix.IPPROTO_TCP, Opt: unix.TCP_CORK},
	"TCP_CONGESTION":           {Level: unix.IPPROTO_TCP, Opt: unix.TCP_CONGESTION, Str: true},
	"TCP_QUICKACK":             {Level: unix.IPPROTO_TCP, Opt: unix.TCP_QUICKACK},
	"TCP_NOTSENT_LOWAT":        {Level: unix.IPPROTO_TCP, Opt: unix.TCP_NOTSENT_LOWAT},
	"TCP_WINDOW_CLAMP":         {Level: unix.IPPROTO_TCP, Opt: unix.TCP_WINDOW_CLAMP},
	"TCP_USER_TIMEOUT":         {Level: unix.IPPROTO_TCP, Opt: unix.TCP_USER_TIMEOUT},
	"TCP_KEEPIDLE":             {Level: unix.IPPROTO_TCP, Opt: unix.TCP_KEEPIDLE},
	"TCP_KEEPINTVL":            {Level: unix.IPPROTO_TCP, Opt: unix.TCP_KEEPINTVL},
	"TCP_KEEPCNT":              {Level: unix.IPPROTO_TCP, Opt: unix.TCP_KEEPCNT},
	"TCP_THIN_LINEAR_TIMEOUTS": {Level: unix.IPPROTO_TCP, Opt: unix.TCP_THIN_LINEAR_TIMEOUTS},
}

// sockOptByNumber lets a number form print, and parse string values, as the
// option it names.
var sockOptByNumber = func() map[sockOptKey]string {
	m := make(map[sockOptKey]string, len(knownSockOpts))
	for name, o := range knownSockOpts {
		m[sockOptKey{o.Level, o.Opt}] = name
	}
	return m
}()

// sockOptLevels are the prefixes of the level.N number forms.
var sockOptLevels = map[string]int{
	"tcp":  unix.IPPROTO_TCP,
	"ip":   unix.IPPROTO_IP,
	"ipv6": unix.IPPROTO_IPV6,
}

// KnownSockOpts lists the option names, sorted.
func KnownSockOpts() []string {
	names := make([]string, 0, len(knownSockOpts))
	for name := range knownSockOpts {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}

// LookupSockOpt resolves a name ("SO_RCVBUF", case-insensitive) or number
// form ("7" at SOL_SOCKET, "tcp.13", "ip.1", "ipv6.67") without a value.
func LookupSockOpt(name string) (SockOpt, error) {
	name = strings.TrimSpace(name)
	if o, ok := knownSockOpts[strings.ToUpper(name)]; ok {
		o.Name = strings.ToUpper(name)
		return o, nil
	}
	level, num, dotted := strings.Cut(name, ".")
	lv := unix.SOL_SOCKET
	if dotted {
		l, ok := sockOptLevels[strings.ToLower(level)]
		if !ok {
			return SockOpt{}, fmt.Errorf("socket option %q: unknown level %q (want tcp.N, ip.N or ipv6.N)", name, level)
		}
		lv = l
	} else {
		num = name
	}
	n, err := strconv.ParseUint(num, 10, 31)
	if err != nil {
		if dotted {
			return SockOpt{}, fmt.Errorf("socket option %q: bad option number %q", name, num)
		}
		return SockOpt{}, fmt.Errorf("unknown socket option %q (known: %s; or N, tcp.N, ip.N, ipv6.N)", name, strings.Join(KnownSockOpts(), ", "))
	}
	if known, ok := sockOptByNumber[sockOptKey{lv, int(n)}]; ok {
		o := knownSockOpts[known]
		o.Name = known
		return o, nil
	}
	return SockOpt{Name: name, Level: lv, Opt: int(n)}, nil
}

// ParseSockOpt reads NAME=VALUE or NUMBER=VALUE ("SO_RCVBUF=10000000",
// "TCP_CONGESTION=bbr", "7=65536", "tcp.1=1"); integers may be hex (0x10).
func ParseSockOpt(s string) (SockOpt, error) {
	name, val, ok := strings.Cut(s, "=")
	if !ok {
		return SockOpt{}, fmt.Errorf("socket option %q: want NAME=VALUE", s)
	}
	o, err := LookupSockOpt(name)
	if err != nil {
		return SockOpt{}, err
	}
	val = strings.TrimSpace(val)
	if o.Str {
		if val == "" {
			return SockOpt{}, fmt.Errorf("socket option %s: empty value", o.Name)
		}
		o.StrValue = val
		return o, nil
	}
	// setsockopt takes a C int.
	v, err := strconv.ParseInt(val, 0, 32)
	if err != nil {
		return SockOpt{}, fmt.Errorf("socket option %s: value %q is not a 32-bit integer", o.Name, val)
	}
	o.Value = int(v)
	return o, nil
}

// String is the option as ParseSockOpt reads it.
func (o SockOpt) String() string {
	if o.Str {
		return o.Name + "=" + o.StrValue
	}
	return o.Name + "=" + strconv.Itoa(o.Value)
}

// Set sets the option on fd; call it from a RawConn's Control.
func (o SockOpt) Set(fd int) error {
	var err error
	if o.Str {
		err = unix.SetsockoptString(fd, o.Level, o.Opt, o.StrValue)
	} else {
		err = unix.SetsockoptInt(fd, o.Level, o.Opt, o.Value)
	}
	if err == nil {
		return nil
	}
	// The kernel's errors for congestion control name a file or a permission,
	// not the algorithm.
	if o.Level == unix.IPPROTO_TCP && o.Opt == unix.TCP_CONGESTION {
		switch {
		case errors.Is(err, unix.ENOENT):
			return fmt.Errorf("set %s: congestion control %q not available (see /proc/sys/net/ipv4/tcp_available_congestion_control): %w", o, o.StrValue, err)
		case errors.Is(err, unix.EPERM):
			return fmt.Errorf("set %s: congestion control %q not in /proc/sys/net/ipv4/tcp_allowed_congestion_control and no CAP_NET_ADMIN: %w", o, o.StrValue, err)
		}
	}
	return fmt.Errorf("set %s: %w", o, err)
}

// Get reads the option back from fd, formatted as an integer or, for string
// options, the string ("bbr").
func (o SockOpt) Get(fd int) (string, error) {
	if o.Str {
		s, err := unix.GetsockoptString(fd, o.Level, o.Opt)
		if err != nil {
			return "", fmt.Errorf("get %s: %w", o.Name, err)
		}
		return s, nil
	}
	v, err := unix.GetsockoptInt(fd, o.Level, o.Opt)
	if err != nil {
		return "", fmt.Errorf("get %s: %w", o.Name, err)
	}
	return strconv.Itoa(v), nil
}
