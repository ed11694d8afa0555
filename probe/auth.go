package probe

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
)

const nonceLen = 32

// The two MACs differ in label and nonce order, so that a client's proof can
// never be reflected back as the agent's. Both nonces are fresh per
// connection, so a recorded handshake does not verify on another.
func clientMAC(key, agentNonce, clientNonce []byte) []byte {
	return mac(key, "probe client v1", agentNonce, clientNonce)
}

func agentMAC(key, agentNonce, clientNonce []byte) []byte {
	return mac(key, "probe agent v1", clientNonce, agentNonce)
}

func mac(key []byte, label string, a, b []byte) []byte {
	h := hmac.New(sha256.New, key)
	h.Write([]byte(label))
	h.Write(a)
	h.Write(b)
	return h.Sum(nil)
}

func newNonce() []byte {
	b := make([]byte, nonceLen)
	rand.Read(b)
	return b
}
