package probe

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"sync"
	"time"
)

// PerfALPN is the ALPN of the QUIC perf protocol (draft-banks-quic-performance).
const PerfALPN = "perf"

// quicTLS is the agent's QUIC certificate and the TLS configuration every
// session shares, made once: one configuration keeps one set of session
// ticket keys, so that a client resumes across sessions.
type quicTLS struct {
	once sync.Once
	conf *tls.Config
	sum  []byte
	err  error
}

func (q *quicTLS) get(cert *tls.Certificate) (*tls.Config, []byte, error) {
	q.once.Do(func() {
		if cert == nil {
			c, err := SelfSignedCert()
			if err != nil {
				q.err = err
				return
			}
			cert = &c
		}
		if len(cert.Certificate) == 0 {
			q.err = errors.New("the QUIC certificate is empty")
			return
		}
		var key [32]byte
		rand.Read(key[:])
		q.conf = &tls.Config{Certificates: []tls.Certificate{*cert}, NextProtos: []string{PerfALPN}, MinVersion: tls.VersionTLS13}
		q.conf.SetSessionTicketKeys([][32]byte{key})
		q.sum = CertFingerprint(cert.Certificate[0])
	})
	return q.conf, q.sum, q.err
}

// QUICFingerprint is the SHA-256 of the certificate the agent's QUIC
// sessions present (making it now if the agent has none); the agent logs it
// so that clients can pin it with --pin.
func (s *Server) QUICFingerprint() ([]byte, error) {
	_, sum, err := s.quic.get(s.cfg.QUICCert)
	return sum, err
}

// CertFingerprint is the SHA-256 of a DER certificate.
func CertFingerprint(der []byte) []byte {
	sum := sha256.Sum256(der)
	return sum[:]
}

// FormatFingerprint prints a fingerprint as sha256:hex.
func FormatFingerprint(sum []byte) string { return "sha256:" + hex.EncodeToString(sum) }

// ParseFingerprint reads sha256:hex or bare hex, colons allowed.
func ParseFingerprint(s string) ([]byte, error) {
	h := bytes.ReplaceAll(bytes.TrimPrefix([]byte(s), []byte("sha256:")), []byte(":"), nil)
	sum, err := hex.DecodeString(string(h))
	if err != nil || len(sum) != sha256.Size {
		return nil, fmt.Errorf("fingerprint %q: want sha256: and 64 hex digits", s)
	}
	return sum, nil
}

// SelfSignedCert makes an ECDSA P-256 certificate for this host, valid for a
// year, for agents given no certificate.
func SelfSignedCert() (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("generate the QUIC key: %w", err)
	}
	serial, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	host, _ := os.Hostname()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "probe agent " + host},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(365 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     []string{"localhost", host},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("make the QUIC certificate: %w", err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}

// QUICTrust says how a client checks the agent's QUIC certificate.
type QUICTrust struct {
	// Pin is the certificate's SHA-256; nil: the one the agent announced on
	// the control connection.
	Pin []byte
	// CA verifies the chain and the host name instead of pinning.
	CA *x509.CertPool
	// Insecure accepts any certificate.
	Insecure bool
}

// certCheck keeps the first verification failure, so that the handshake's
// error can say what was wrong rather than quic-go's CRYPTO_ERROR.
type certCheck struct {
	peer string // as the messages name it; "": the agent
	mu   sync.Mutex
	err  error
}

func (c *certCheck) who() string {
	if c.peer == "" {
		return "agent"
	}
	return c.peer
}

func (c *certCheck) fail(err error) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err == nil {
		c.err = err
	}
	return err
}

func (c *certCheck) failure() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// clientTLS is the client's TLS configuration for a session; announced is
// the fingerprint the agent sent on the control connection.
func clientTLS(t QUICTrust, host string, announced []byte, check *certCheck) (*tls.Config, error) {
	conf := &tls.Config{NextProtos: []string{PerfALPN}, MinVersion: tls.VersionTLS13, ServerName: host,
		ClientSessionCache: tls.NewLRUClientSessionCache(8)}
	switch {
	case t.Insecure:
		conf.InsecureSkipVerify = true
	case t.CA != nil:
		conf.RootCAs = t.CA
		conf.VerifyConnection = func(cs tls.ConnectionState) error {
			if len(cs.VerifiedChains) == 0 && !cs.DidResume {
				return check.fail(fmt.Errorf("the %s's certificate is not signed by the --ca", check.who()))
			}
			return nil
		}
	default:
		pin := t.Pin
		if pin == nil {
			pin = announced
		}
		if len(pin) == 0 {
			return nil, errors.New("the agent announced no certificate to pin: give --pin, --ca or --insecure")
		}
		// Verification is ours: the pinned leaf, whatever its names and
		// issuer. VerifyConnection runs on resumed connections too.
		conf.InsecureSkipVerify = true
		conf.VerifyConnection = func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return check.fail(fmt.Errorf("the %s presented no certificate", check.who()))
			}
			got := CertFingerprint(cs.PeerCertificates[0].Raw)
			if !bytes.Equal(got, pin) {
				return check.fail(fmt.Errorf("the %s's certificate %s is not the pinned %s",
					check.who(), FormatFingerprint(got), FormatFingerprint(pin)))
			}
			return nil
		}
	}
	return conf, nil
}

// perfTLS is the client's TLS configuration for a perf server reached
// without a control connection: nothing announces a certificate, so a trust
// of none checks the chain against the system's roots and the name against
// host, and a failure names the ways to trust the server instead.
func perfTLS(t QUICTrust, host string, check *certCheck) (*tls.Config, error) {
	if t.Insecure || t.CA != nil || t.Pin != nil {
		return clientTLS(t, host, nil, check)
	}
	conf := &tls.Config{NextProtos: []string{PerfALPN}, MinVersion: tls.VersionTLS13, ServerName: host,
		ClientSessionCache: tls.NewLRUClientSessionCache(8)}
	// The check is ours, to make its failure one clear line; it runs on
	// resumed connections too.
	conf.InsecureSkipVerify = true
	conf.VerifyConnection = func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return check.fail(fmt.Errorf("the %s presented no certificate", check.who()))
		}
		opts := x509.VerifyOptions{DNSName: host, Intermediates: x509.NewCertPool()}
		for _, c := range cs.PeerCertificates[1:] {
			opts.Intermediates.AddCert(c)
		}
		if _, err := cs.PeerCertificates[0].Verify(opts); err != nil {
			return check.fail(fmt.Errorf("the %s's certificate %s does not verify against the system's roots (%v): "+
				"trust it with --ca FILE, --pin sha256:HEX or --insecure", check.who(),
				FormatFingerprint(CertFingerprint(cs.PeerCertificates[0].Raw)), err))
		}
		return nil
	}
	return conf, nil
}

// LoadCA reads PEM certificates into a pool.
func LoadCA(path string) (*x509.CertPool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("read CA %s: no PEM certificate in it", path)
	}
	return pool, nil
}
