package probe

import "github.com/probe-dev/probe/probe/internal/wire"

// The parameters and results of sessions are wire types; these names let
// callers outside probe build and read them without the wire package.
type (
	Limits     = wire.Limits
	HostInfo   = wire.HostInfo
	EchoParams = wire.EchoParams
	TCPParams  = wire.TCPParams
	TCPSide    = wire.TCPSide
	QUICParams = wire.QUICParams
	QUICSide   = wire.QUICSide
	UDPBuffers = wire.UDPBuffers
	RunParams  = wire.RunParams
	Counters   = wire.Counters
	IfCounter  = wire.IfCounter
	// Error is the agent's refusal of a request, as its client returns it.
	Error = wire.Error
)

// Bounds of session parameters.
const (
	// MaxStreams bounds a TCP or QUIC test's parallel streams.
	MaxStreams = wire.MaxStreams
	// DefaultRunGrace is how long a command has from SIGINT to SIGKILL.
	DefaultRunGrace = wire.DefaultRunGrace
)

// Who sends a TCP or QUIC test's data.
type Direction = wire.Direction

const (
	DirForward = wire.DirForward // the client sends
	DirReverse = wire.DirReverse // the agent sends
	DirBidir   = wire.DirBidir   // both, at once
)

// Code is why an agent refused a request (Error.Code).
type Code = wire.Code

const (
	CodeProtocol   = wire.CodeProtocol
	CodeMalformed  = wire.CodeMalformed
	CodeOversize   = wire.CodeOversize
	CodeVersion    = wire.CodeVersion
	CodeAuth       = wire.CodeAuth
	CodeInternal   = wire.CodeInternal
	CodeBusy       = wire.CodeBusy
	CodeLimit      = wire.CodeLimit
	CodeIdle       = wire.CodeIdle
	CodeSockOpt    = wire.CodeSockOpt
	CodeForbidden  = wire.CodeForbidden
	CodeTimeout    = wire.CodeTimeout
	CodeBadRequest = wire.CodeBadRequest
	CodeStreams    = wire.CodeStreams
	CodeRunFailed  = wire.CodeRunFailed
)

// Mode is the kind of session a client opens.
type Mode = wire.Mode

const (
	ModeEcho     = wire.ModeEcho
	ModeCapacity = wire.ModeCapacity
	ModeTCP      = wire.ModeTCP
	ModeQUIC     = wire.ModeQUIC
	ModeRun      = wire.ModeRun
	ModeCounters = wire.ModeCounters
)

// ProtocolVersion is the control protocol this build speaks.
const ProtocolVersion = wire.ProtocolVersion
