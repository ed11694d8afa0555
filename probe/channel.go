package probe

import (
	"bufio"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"net"

	"github.com/probe-dev/probe/probe/internal/wire"
)

// The control channel: after the client's plain Hello (so that a client of
// another release gets a readable refusal), both ends switch to TLS 1.3 with
// the agent's certificate, the one its QUIC sessions present. With a key,
// each end then proves it holds the key with an HMAC over the TLS session's
// exported keying material: a proof made on one TLS session does not verify
// on another, so a relay that terminates TLS on either side, or replays a
// recorded handshake, cannot authenticate, and everything after the
// handshake is TLS records that it can neither read nor forge.

// controlALPN names the control protocol inside TLS.
const controlALPN = "probe-control/3"

// exporterLabel and the proof labels are fixed by the protocol version; the
// two proof labels differ so that a client's proof cannot be reflected back
// as the agent's.
const (
	exporterLabel    = "EXPORTER-probe-control-v3"
	exporterLen      = 32
	clientProofLabel = "probe client v3"
	agentProofLabel  = "probe agent v3"
)

// bufferedConn reads first what a plain-text frame reader already
// buffered, so that no TLS byte is lost at the switch.
type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c bufferedConn) Read(b []byte) (int, error) { return c.r.Read(b) }

// sessionSecret is what both proofs are computed over: unique to this TLS
// connection (RFC 8446 section 7.5).
func sessionSecret(cs tls.ConnectionState) ([]byte, error) {
	b, err := cs.ExportKeyingMaterial(exporterLabel, nil, exporterLen)
	if err != nil {
		return nil, fmt.Errorf("export keying material: %w", err)
	}
	return b, nil
}

func clientProof(key, secret []byte) []byte { return proof(key, clientProofLabel, secret) }
func agentProof(key, secret []byte) []byte  { return proof(key, agentProofLabel, secret) }

func proof(key []byte, label string, secret []byte) []byte {
	h := hmac.New(sha256.New, key)
	h.Write([]byte(label))
	h.Write(secret)
	return h.Sum(nil)
}

// agentTLS is the agent's TLS configuration of control connections: the
// QUIC certificate, TLS 1.3 only, no resumption (a control connection is
// long-lived and resumes nothing).
func (s *Server) agentTLS() (*tls.Config, error) {
	q, _, err := s.quic.get(s.cfg.QUICCert)
	if err != nil {
		return nil, err
	}
	conf := &tls.Config{Certificates: q.Certificates, MinVersion: tls.VersionTLS13,
		NextProtos: []string{controlALPN}, SessionTicketsDisabled: true}
	return conf, nil
}

// secureAgent runs the agent's half of the switch to TLS on raw, whose
// plain Hello fc has read, and returns the TLS connection.
func (s *Server) secureAgent(ctx context.Context, raw net.Conn, fc *wire.Conn) (*tls.Conn, error) {
	conf, err := s.agentTLS()
	if err != nil {
		return nil, refusal(wire.CodeInternal, "%v", err)
	}
	if err := fc.Write(&wire.Message{StartTLS: &wire.StartTLS{Version: wire.ProtocolVersion, Agent: "probe"}}); err != nil {
		return nil, err
	}
	tc := tls.Server(bufferedConn{Conn: raw, r: fc.Reader()}, conf)
	if err := tc.HandshakeContext(ctx); err != nil {
		return nil, fmt.Errorf("tls handshake: %w", err)
	}
	return tc, nil
}

// authenticate checks the client's Auth on the TLS connection and returns
// the Welcome that answers it.
func (s *Server) authenticate(tc *tls.Conn, a *wire.Auth) (*wire.Welcome, error) {
	w := &wire.Welcome{Limits: s.cfg.Limits, Host: LocalHost(s.cfg.Stamper != nil)}
	if len(s.cfg.Key) == 0 {
		return w, nil
	}
	if len(a.MAC) == 0 {
		return nil, refusal(wire.CodeAuth, "authentication required: this agent has a key, give it with --key-file")
	}
	secret, err := sessionSecret(tc.ConnectionState())
	if err != nil {
		return nil, refusal(wire.CodeInternal, "%v", err)
	}
	if !hmac.Equal(a.MAC, clientProof(s.cfg.Key, secret)) {
		return nil, refusal(wire.CodeAuth, "authentication failed: wrong key")
	}
	w.MAC = agentProof(s.cfg.Key, secret)
	return w, nil
}

// controlTLS is the client's TLS configuration of the control connection.
// --pin, --ca and --insecure mean what they mean for QUIC; with none of
// them the agent's certificate is taken as it comes and its fingerprint
// kept for the caller to show (trust on first use), and with a key the
// agent's proof, bound to this TLS session, is what authenticates it.
func controlTLS(t QUICTrust, host string, check *certCheck) (*tls.Config, error) {
	var conf *tls.Config
	if t.Insecure || t.CA != nil || t.Pin != nil {
		c, err := clientTLS(t, host, nil, check)
		if err != nil {
			return nil, err
		}
		conf = c
	} else {
		conf = &tls.Config{MinVersion: tls.VersionTLS13, ServerName: host, InsecureSkipVerify: true,
			VerifyConnection: func(cs tls.ConnectionState) error {
				if len(cs.PeerCertificates) == 0 {
					return check.fail(errors.New("the agent presented no certificate"))
				}
				return nil
			}}
	}
	conf.NextProtos = []string{controlALPN}
	conf.ClientSessionCache = nil
	return conf, nil
}

// secureClient switches the client's connection to TLS after the agent's
// StartTLS, and returns the TLS connection.
func (c *Client) secureClient(ctx context.Context) (*tls.Conn, error) {
	check := &certCheck{}
	conf, err := controlTLS(c.cfg.Trust, c.host, check)
	if err != nil {
		return nil, err
	}
	tc := tls.Client(bufferedConn{Conn: c.conn, r: c.fc.Reader()}, conf)
	if err := tc.HandshakeContext(ctx); err != nil {
		if f := check.failure(); f != nil {
			return nil, f
		}
		return nil, fmt.Errorf("tls handshake: %w", err)
	}
	if cs := tc.ConnectionState(); cs.NegotiatedProtocol != controlALPN {
		return nil, fmt.Errorf("the agent does not speak %s over TLS", controlALPN)
	}
	return tc, nil
}

// AgentFingerprint is the SHA-256 of the certificate the agent presented on
// the control connection, as --pin takes it.
func (c *Client) AgentFingerprint() []byte { return c.fingerprint }

// Verified says whether the agent was authenticated: by its proof of the
// key, or by its certificate (--pin or --ca); false with --insecure or on
// first use.
func (c *Client) Verified() bool { return c.verified }
