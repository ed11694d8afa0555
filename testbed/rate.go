package testbed

import (
	"fmt"
	"math"
	"math/bits"
	"strconv"
	"strings"
)

// rateUnits are tc's bit units; byte units ("mbps") are refused because tc reads them as
// bytes while most people mean bits.
// FormatRate writes the decimal ones, largest first.
var rateUnits = []struct {
	name    string
	mult    uint64
	decimal bool
}{
	{"tbit", 1e12, true}, {"gbit", 1e9, true}, {"mbit", 1e6, true}, {"kbit", 1e3, true},
	{"tibit", 1 << 40, false}, {"gibit", 1 << 30, false}, {"mibit", 1 << 20, false},
	{"kibit", 1 << 10, false}, {"bit", 1, false},
}

// ParseRate reads a rate in bit/s: a plain number ("100000") or a number with a tc bit
// unit ("500kbit", "20mbit", "1.5gbit", "1mibit"), case-insensitive, optionally
// followed by "/s" ("20Mbit/s").
func ParseRate(s string) (uint64, error) {
	in := s
	s = strings.ToLower(strings.TrimSpace(s))
	s = strings.TrimSuffix(s, "/s")
	end := strings.IndexFunc(s, func(r rune) bool { return (r < '0' || r > '9') && r != '.' })
	if end < 0 {
		end = len(s)
	}
	num, unit := s[:end], s[end:]
	if num == "" {
		return 0, fmt.Errorf("parse rate %q: want a number of bit/s like 100000 or 20mbit", in)
	}
	mult := uint64(0)
	if unit == "" {
		mult = 1
	}
	for _, u := range rateUnits {
		if unit == u.name {
			mult = u.mult
		}
	}
	if mult == 0 {
		if strings.HasSuffix(unit, "bps") || strings.HasSuffix(unit, "b") {
			return 0, fmt.Errorf("parse rate %q: unit %q is ambiguous (bits or bytes?): use bit, kbit, mbit or gbit", in, unit)
		}
		return 0, fmt.Errorf("parse rate %q: unknown unit %q: use bit, kbit, mbit, gbit or tbit", in, unit)
	}
	v, err := scaleDecimal(num, mult)
	if err != nil {
		return 0, fmt.Errorf("parse rate %q: %w", in, err)
	}
	return v, nil
}

// scaleDecimal returns num*mult rounded to an integer, with exact integer arithmetic so
// that FormatRate output parses back to the same value.
func scaleDecimal(num string, mult uint64) (uint64, error) {
	ip, fp, hasDot := strings.Cut(num, ".")
	if ip == "" && fp == "" || hasDot && fp == "" || strings.Contains(fp, ".") {
		return 0, fmt.Errorf("want a number like 20 or 1.5, got %q", num)
	}
	var whole uint64
	if ip != "" {
		n, err := strconv.ParseUint(ip, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("number %q is too large", num)
		}
		hi, lo := bits.Mul64(n, mult)
		if hi != 0 {
			return 0, fmt.Errorf("number %q is too large", num)
		}
		whole = lo
	}
	fp = strings.TrimRight(fp, "0")
	if len(fp) > 18 {
		fp = fp[:18]
	}
	if fp == "" {
		return whole, nil
	}
	f, _ := strconv.ParseUint(fp, 10, 64)
	den := uint64(math.Pow10(len(fp)))
	hi, lo := bits.Mul64(f, mult)
	q, r := bits.Div64(hi, lo, den)
	if 2*r >= den {
		q++
	}
	sum, carry := bits.Add64(whole, q, 0)
	if carry != 0 {
		return 0, fmt.Errorf("number %q is too large", num)
	}
	return sum, nil
}

// FormatRate writes bit/s with the largest decimal tc unit that keeps the value exact, so
// ParseRate reads it back unchanged: 20000000 -> "20mbit", 1500000000 -> "1.5gbit".
func FormatRate(bps uint64) string {
	for _, u := range rateUnits {
		if !u.decimal || bps < u.mult {
			continue
		}
		q, r := bps/u.mult, bps%u.mult
		if r == 0 {
			return fmt.Sprintf("%d%s", q, u.name)
		}
		digits := len(strconv.FormatUint(u.mult, 10)) - 1
		frac := strings.TrimRight(fmt.Sprintf("%0*d", digits, r), "0")
		return fmt.Sprintf("%d.%s%s", q, frac, u.name)
	}
	return fmt.Sprintf("%dbit", bps)
}
