package wire

import "testing"

// TestWireStrings pins what modes, directions and codes are on the wire:
// peers of other releases compare these strings.
func TestWireStrings(t *testing.T) {
	for got, want := range map[string]string{
		string(ModeEcho): "echo", string(ModeCapacity): "capacity", string(ModeTCP): "tcp",
		string(ModeQUIC): "quic", string(ModeRun): "run", string(ModeCounters): "counters",
		string(DirForward): "forward", string(DirReverse): "reverse", string(DirBidir): "bidir",
		string(CodeProtocol): "protocol", string(CodeMalformed): "malformed", string(CodeOversize): "oversize",
		string(CodeVersion): "version", string(CodeAuth): "auth", string(CodeInternal): "internal",
		string(CodeBusy): "busy", string(CodeLimit): "limit", string(CodeIdle): "idle",
		string(CodeSockOpt): "sockopt", string(CodeForbidden): "forbidden", string(CodeTimeout): "timeout",
		string(CodeBadRequest): "bad-request", string(CodeStreams): "streams", string(CodeRunFailed): "run-failed",
	} {
		if got != want {
			t.Errorf("%q on the wire, want %q", got, want)
		}
	}
}
