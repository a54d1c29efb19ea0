package channel

import (
	"crypto/rsa"
	"crypto/x509"
	"encoding/binary"
	"time"

	"github.com/gopcua/opcua/ua"
	"github.com/gopcua/opcua/uapolicy"
)

// token is one SecurityToken of a channel with the symmetric keys derived
// from the client and server nonces of the OpenSecureChannel exchange that
// issued it.
type token struct {
	id        uint32
	createdAt time.Time
	lifetime  time.Duration
	sym       *uapolicy.EncryptionAlgorithm // nil under SecurityPolicy None
}

// expiresAt is the end of the token's lifetime plus the 25 % grace Part 4
// §5.5.2 gives a client for messages secured with an expired token.
func (t *token) expiresAt() time.Time {
	return t.createdAt.Add(t.lifetime + t.lifetime/4)
}

// aesBlock is the cipher block of every symmetric algorithm offered here.
const aesBlock = 16

// symMaxBody is the largest message body (after the sequence header) that
// fits one chunk of chunkSize bytes, Part 6 §6.7.2.5.
func symMaxBody(chunkSize int, mode ua.MessageSecurityMode, sym *uapolicy.EncryptionAlgorithm) int {
	const head = secureHeaderLen + 4 // message header and token id
	switch mode {
	case ua.MessageSecurityModeSign:
		return chunkSize - head - seqHeaderLen - sym.SignatureLength()
	case ua.MessageSecurityModeSignAndEncrypt:
		// one PaddingSize byte: symmetric signatures are never longer than 256 bytes
		return aesBlock*((chunkSize-head)/aesBlock) - seqHeaderLen - sym.SignatureLength() - 1
	default:
		return chunkSize - head - seqHeaderLen
	}
}

// sealSym signs and, under SignAndEncrypt, pads and encrypts one symmetric
// chunk b (message header, token id, sequence header, body) in place of its
// plaintext and fixes its MessageSize.
func sealSym(b []byte, mode ua.MessageSecurityMode, sym *uapolicy.EncryptionAlgorithm) ([]byte, error) {
	const head = secureHeaderLen + 4
	switch mode {
	case ua.MessageSecurityModeSign, ua.MessageSecurityModeSignAndEncrypt:
	default:
		binary.LittleEndian.PutUint32(b[4:], uint32(len(b)))
		return b, nil
	}
	sigLen := sym.SignatureLength()
	if mode == ua.MessageSecurityModeSignAndEncrypt {
		pad := 0
		if r := (len(b) - head + 1 + sigLen) % aesBlock; r != 0 {
			pad = aesBlock - r
		}
		for i := 0; i <= pad; i++ {
			b = append(b, byte(pad))
		}
	}
	binary.LittleEndian.PutUint32(b[4:], uint32(len(b)+sigLen))
	sig, err := sym.Signature(b)
	if err != nil {
		return nil, err
	}
	b = append(b, sig...)
	if mode == ua.MessageSecurityModeSign {
		return b, nil
	}
	ct, err := sym.Encrypt(b[head:])
	if err != nil {
		return nil, err
	}
	return append(b[:head], ct...), nil
}

// openSym verifies and, under SignAndEncrypt, decrypts one symmetric chunk
// and returns what follows the security header (sequence header and body).
// Every failure is Bad_SecurityChecksFailed, without telling which check.
func openSym(raw []byte, mode ua.MessageSecurityMode, sym *uapolicy.EncryptionAlgorithm) ([]byte, error) {
	const head = secureHeaderLen + 4
	fail := &Error{Code: ua.StatusBadSecurityChecksFailed}
	switch mode {
	case ua.MessageSecurityModeSign, ua.MessageSecurityModeSignAndEncrypt:
	default:
		return raw[head:], nil
	}
	b := raw
	if mode == ua.MessageSecurityModeSignAndEncrypt {
		ct := raw[head:]
		if len(ct) == 0 || len(ct)%aesBlock != 0 {
			return nil, fail
		}
		pt, err := sym.Decrypt(ct)
		if err != nil || len(pt) != len(ct) {
			return nil, fail
		}
		b = make([]byte, 0, len(raw))
		b = append(append(b, raw[:head]...), pt...)
	}
	sigLen := sym.RemoteSignatureLength()
	if len(b) < head+seqHeaderLen+sigLen {
		return nil, fail
	}
	signed, sig := b[:len(b)-sigLen], b[len(b)-sigLen:]
	if err := sym.VerifySignature(signed, sig); err != nil {
		return nil, fail
	}
	if mode == ua.MessageSecurityModeSign {
		return signed[head:], nil
	}
	body, ok := stripPadding(signed[head:], false)
	if !ok || len(body) < seqHeaderLen {
		return nil, fail
	}
	return body, nil
}

// stripPadding removes Padding, PaddingSize and (when extra) ExtraPaddingSize
// from the end of p after checking every padding byte.
func stripPadding(p []byte, extra bool) ([]byte, bool) {
	n := len(p)
	if n < 1 || (extra && n < 2) {
		return nil, false
	}
	size := int(p[n-1])
	tail := 1
	low := p[n-1]
	if extra {
		size = int(p[n-1])<<8 | int(p[n-2])
		low = p[n-2]
		tail = 2
	}
	if size+tail > n {
		return nil, false
	}
	for _, c := range p[n-tail-size : n-tail] {
		if c != low {
			return nil, false
		}
	}
	return p[:n-tail-size], true
}

// asymmetric is the crypto of OpenSecureChannel messages: RSA with the
// gateway key and the client certificate's key.
type asymmetric struct {
	algo          *uapolicy.EncryptionAlgorithm
	localKeySize  int // bytes
	remoteKeySize int // bytes
}

// newAsymmetric is the OpenSecureChannel crypto of policy between our key
// and the peer's certificate (DER, a chain's first); who names the peer in
// the errors: a malformed or non-RSA certificate is
// Bad_CertificateInvalid, a key the policy does not take
// Bad_CertificatePolicyCheckFailed.
func newAsymmetric(policy string, local *rsa.PrivateKey, peerCert []byte, who string) (*asymmetric, *x509.Certificate, error) {
	cert, err := uapolicy.ParseCertificate(peerCert)
	if err != nil {
		return nil, nil, errorf(ua.StatusBadCertificateInvalid, "%s certificate: %v", who, err)
	}
	pub, ok := cert.PublicKey.(*rsa.PublicKey)
	if !ok {
		return nil, nil, errorf(ua.StatusBadCertificateInvalid, "%s certificate has a %T key, not RSA", who, cert.PublicKey)
	}
	algo, err := uapolicy.Asymmetric(policy, local, pub)
	if err != nil {
		return nil, nil, errorf(ua.StatusBadCertificatePolicyCheckFailed, "%s certificate key: %v", who, err)
	}
	return &asymmetric{algo: algo, localKeySize: local.PublicKey.Size(), remoteKeySize: pub.Size()}, cert, nil
}

// open decrypts and verifies an OPN chunk whose security header ends at
// head and returns the sequence header and body.
func (a *asymmetric) open(raw []byte, head int) ([]byte, error) {
	fail := &Error{Code: ua.StatusBadSecurityChecksFailed}
	ct := raw[head:]
	if len(ct) == 0 || len(ct)%a.localKeySize != 0 {
		return nil, fail
	}
	pt, err := a.algo.Decrypt(ct)
	if err != nil {
		return nil, fail
	}
	b := make([]byte, 0, head+len(pt))
	b = append(append(b, raw[:head]...), pt...)
	sigLen := a.remoteKeySize
	if len(b) < head+seqHeaderLen+sigLen {
		return nil, fail
	}
	signed, sig := b[:len(b)-sigLen], b[len(b)-sigLen:]
	// the MessageSize the client signed is that of the encrypted chunk
	if binary.LittleEndian.Uint32(signed[4:]) != uint32(len(raw)) {
		return nil, fail
	}
	if err := a.algo.VerifySignature(signed, sig); err != nil {
		return nil, fail
	}
	// ExtraPaddingSize is present when the encrypting key (ours) exceeds 2048 bits
	body, ok := stripPadding(signed[head:], a.localKeySize > 256)
	if !ok || len(body) < seqHeaderLen {
		return nil, fail
	}
	return body, nil
}

// seal pads, signs and encrypts an OPN chunk b whose security header ends at
// head, and fixes its MessageSize.
func (a *asymmetric) seal(b []byte, head int) ([]byte, error) {
	block := a.algo.PlaintextBlockSize()
	sigLen := a.localKeySize
	extra := a.remoteKeySize > 256
	tail := 1
	if extra {
		tail = 2
	}
	pad := 0
	if r := (len(b) - head + tail + sigLen) % block; r != 0 {
		pad = block - r
	}
	for i := 0; i < pad; i++ {
		b = append(b, byte(pad))
	}
	b = append(b, byte(pad))
	if extra {
		b = append(b, byte(pad>>8))
	}
	blocks := (len(b) - head + sigLen) / block
	binary.LittleEndian.PutUint32(b[4:], uint32(head+blocks*a.remoteKeySize))
	sig, err := a.algo.Signature(b)
	if err != nil {
		return nil, err
	}
	b = append(b, sig...)
	ct, err := a.algo.Encrypt(b[head:])
	if err != nil {
		return nil, err
	}
	if len(ct) != blocks*a.remoteKeySize {
		return nil, errorf(ua.StatusBadInternalError, "asymmetric encryption produced %d bytes, want %d", len(ct), blocks*a.remoteKeySize)
	}
	return append(b[:head], ct...), nil
}
