package wire

// The strings below travel on the wire: changing one breaks clients and
// agents of other releases, as a change of the frames would.

// Mode is the kind of session Open asks for.
type Mode string

const (
	ModeEcho     Mode = "echo"
	ModeCapacity Mode = "capacity"
	ModeTCP      Mode = "tcp"
	ModeQUIC     Mode = "quic"
	ModeRun      Mode = "run"
	ModeCounters Mode = "counters"
)

// Direction says who sends a TCP or QUIC test's data.
type Direction string

const (
	DirForward Direction = "forward" // the client sends
	DirReverse Direction = "reverse" // the agent sends
	DirBidir   Direction = "bidir"   // both, at once
)

// Code is why the agent refused a request, in an Error.
type Code string

const (
	CodeProtocol   Code = "protocol"    // a frame out of turn
	CodeMalformed  Code = "malformed"   // a frame that does not decode
	CodeOversize   Code = "oversize"    // a frame over the reader's limit
	CodeVersion    Code = "version"     // another ProtocolVersion
	CodeAuth       Code = "auth"        // no key, or the wrong one
	CodeInternal   Code = "internal"    // the agent's own failure
	CodeBusy       Code = "busy"        // every session slot taken
	CodeLimit      Code = "limit"       // a request over one of the agent's limits
	CodeIdle       Code = "idle"        // a connection or session unused too long
	CodeSockOpt    Code = "sockopt"     // a socket option not on the allow-list
	CodeForbidden  Code = "forbidden"   // a session kind this agent does not allow
	CodeTimeout    Code = "timeout"     // a handshake or a control connection that took too long
	CodeBadRequest Code = "bad-request" // parameters that do not check
	CodeStreams    Code = "streams"     // a TCP or QUIC test's streams that did not connect
	CodeRunFailed  Code = "run-failed"  // a command that did not start
)
