// Package collector observes: it timestamps probe packets in the kernel
// (eBPF at TC, SO_TIMESTAMPING) and counts what processes and hosts do.
package collector

import "encoding/binary"

// The probe header starts the UDP payload of every probe packet. The TC
// program in bpf/probe.c parses the same layout: keep them in step.
//
//	0  magic   u32  "prb1"
//	4  session u32
//	8  seq     u32
//	12 kind    u8
//	13 flags   u8
//	14 index   u16  position in a train
//
// All fields are big-endian.
const (
	ProbeMagic     = 0x70726231 // "prb1"
	ProbeHeaderLen = 16
)

// Kind tells a request from the agent's reply, so that a host that sees both
// (loopback) knows which is which.
type Kind uint8

const (
	KindRequest Kind = 1 // echo probe, client to agent
	KindReply   Kind = 2 // its echo
	KindTrain   Kind = 3 // packet of a capacity train; Index is its position
	KindHello   Kind = 4 // tells the agent where to send trains; answered at its size with a nonce to confirm the port
)

// ProbeHeader is the decoded probe header.
type ProbeHeader struct {
	Session uint32
	Seq     uint32
	Kind    Kind
	Flags   uint8
	Index   uint16
}

// Put writes h at the start of b, which must hold ProbeHeaderLen bytes.
func (h ProbeHeader) Put(b []byte) {
	_ = b[ProbeHeaderLen-1]
	binary.BigEndian.PutUint32(b[0:], ProbeMagic)
	binary.BigEndian.PutUint32(b[4:], h.Session)
	binary.BigEndian.PutUint32(b[8:], h.Seq)
	b[12] = byte(h.Kind)
	b[13] = h.Flags
	binary.BigEndian.PutUint16(b[14:], h.Index)
}

// ParseProbeHeader reads a probe header; ok is false when b is not a probe.
func ParseProbeHeader(b []byte) (h ProbeHeader, ok bool) {
	if len(b) < ProbeHeaderLen || binary.BigEndian.Uint32(b) != ProbeMagic {
		return h, false
	}
	return ProbeHeader{
		Session: binary.BigEndian.Uint32(b[4:]),
		Seq:     binary.BigEndian.Uint32(b[8:]),
		Kind:    Kind(b[12]),
		Flags:   b[13],
		Index:   binary.BigEndian.Uint16(b[14:]),
	}, true
}
