package dump

// EchoRecord is one echo probe as both ends saw it.
type EchoRecord struct {
	Seq      uint32 `msgpack:"seq"`
	Size     int    `msgpack:"size"`    // UDP payload bytes
	Replies  int    `msgpack:"replies"` // 0: lost; >1: duplicated
	ClientTx Stamps `msgpack:"client_tx"`
	ClientRx Stamps `msgpack:"client_rx"` // of the first reply
	AgentRx  Stamps `msgpack:"agent_rx"`
	AgentTx  Stamps `msgpack:"agent_tx"`
}
