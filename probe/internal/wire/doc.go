// Package wire is the control protocol between a client and an agent: its
// messages, and its frames (a 4-byte big-endian length, then msgpack) with
// the bounds a reader holds a peer to before anything is decoded. Every
// field and constant here travels on the wire: a change that older peers
// cannot read needs a ProtocolVersion bump and a new golden file.
//
// The agent and its client (package probe) are the only users; probe
// re-exports, as aliases, the parameter and result types its callers build
// and read.
package wire
