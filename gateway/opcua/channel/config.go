package channel

import (
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	"github.com/gopcua/opcua/ua"
	"github.com/gopcua/opcua/uapolicy"
)

// Offer is one (security policy, security mode) pair the gateway accepts. A
// client can open a channel only with a pair that is offered.
type Offer struct {
	PolicyURI string                 // e.g. ua.SecurityPolicyURIBasic256Sha256
	Mode      ua.MessageSecurityMode // e.g. ua.MessageSecurityModeSignAndEncrypt
}

// Config is the server side of a secure channel. Accept works on a copy with
// the defaults filled in.
type Config struct {
	// OpenAtEOF keeps the socket open when the client's stream ends (or a
	// server that is stopping shut the reading side), so that the answers
	// to the requests in flight still go out; the owner must Close the
	// channel. Without it the socket is closed at once.
	OpenAtEOF bool
	// EndpointURL is the endpoint the channel serves. It is not compared
	// with the Hello's, which clients fill with whatever address they dialled.
	EndpointURL string
	// Offers lists the only pairs a channel can be opened with; anything else
	// is refused with Bad_SecurityPolicyRejected / Bad_SecurityModeRejected.
	Offers []Offer
	// Certificate is the gateway application instance certificate (DER) and
	// PrivateKey its key; required when a secured policy is offered.
	Certificate []byte
	PrivateKey  *rsa.PrivateKey
	// ValidateClient decides whether the client application certificate (the
	// DER chain from the OpenSecureChannel request) is trusted: nil means
	// trusted; an error refuses the channel with StatusOf(err)
	// (Bad_SecurityChecksFailed when it carries no code). Required when a
	// secured policy is offered: certificates are never trusted by default.
	ValidateClient func(chain []byte) error

	// DiscoveryOverNone accepts SecurityPolicy None channels that are not
	// offered, for the discovery services only (GetEndpoints, FindServers,
	// FindServersOnNetwork): most clients fetch the gateway certificate
	// that way before opening their secured channel. Any other request on
	// such a channel is answered with Bad_SecurityPolicyRejected.
	DiscoveryOverNone bool

	// Refused, when set, is told of every request the channel answers with
	// a ServiceFault itself, before the fault goes out: a body that does
	// not decode or is over the decoder's limits, a service the channel
	// does not serve, a session service on a discovery-only channel. It
	// gets the request's RequestHandle, the numeric id of its type (0 when
	// not even that decodes), its AuthenticationToken (nil when that does
	// not decode), the status of the fault and why; the channel goes on. It
	// runs on the goroutine that reads the channel.
	Refused func(handle, typeID uint32, token *ua.NodeID, code ua.StatusCode, err error)

	ReceiveBufferSize uint32 // largest chunk accepted; default 65535, at least 8192
	SendBufferSize    uint32 // largest chunk sent; default 65535, at least 8192
	MaxMessageSize    uint32 // largest request body accepted; default 16 MiB
	MaxChunkCount     uint32 // most chunks in one request; default 512
	// MaxMessageSizeBeforeSession, when not 0, is the largest request body
	// accepted until the owner calls SessionActivated: before a session
	// only discovery and the session services are valid, all of them
	// small. 0: MaxMessageSize from the start.
	MaxMessageSizeBeforeSession uint32
	// PartialBudget, when set, bounds the bytes all channels sharing it
	// hold in requests still in chunks (see PartialBudget). nil: each
	// channel is held to MaxMessageSize alone.
	PartialBudget *PartialBudget
	// MaxDecodedSize bounds what one request may take once decoded, about,
	// in bytes: gopcua's decoder makes many times a message's size of
	// small values (a Browse of minimal descriptions: 35 times), so the
	// body's parts are added up before it decodes them and a body over
	// this is answered with Bad_EncodingLimitsExceeded. Default
	// DefaultMaxDecodedSize (64 MiB), at least MinMaxDecodedSize.
	MaxDecodedSize int64

	// MinTokenLifetime and MaxTokenLifetime clamp the lifetime a client asks
	// for its security tokens; defaults 10 s and 1 h.
	MinTokenLifetime, MaxTokenLifetime time.Duration
	// HelloTimeout bounds the wait for the Hello and then for the first
	// OpenSecureChannel request; default 5 s.
	HelloTimeout time.Duration
	// WriteTimeout bounds writing one message to a client that does not
	// read; default 30 s. The channel is closed when it passes.
	WriteTimeout time.Duration
}

const (
	defaultBufferSize     = 65535
	minBufferSize         = 8192
	defaultMaxMessageSize = 16 << 20
	defaultMaxChunkCount  = 512
	defaultMinLifetime    = 10 * time.Second
	defaultMaxLifetime    = time.Hour
	defaultHelloTimeout   = 5 * time.Second
	defaultWriteTimeout   = 30 * time.Second
)

// supportedPolicies are the policies a gateway may offer. Basic128Rsa15 and
// Basic256 are deprecated (SHA-1) and cannot be offered.
var supportedPolicies = map[string]bool{
	ua.SecurityPolicyURINone:                true,
	ua.SecurityPolicyURIBasic256Sha256:      true,
	ua.SecurityPolicyURIAes128Sha256RsaOaep: true,
	ua.SecurityPolicyURIAes256Sha256RsaPss:  true,
}

// checkAndSetDefaults validates c and fills in defaults.
func (c *Config) checkAndSetDefaults() error {
	if len(c.Offers) == 0 {
		return errors.New("opcua channel: no security policy offered")
	}
	secured := false
	for _, o := range c.Offers {
		if !supportedPolicies[o.PolicyURI] {
			return fmt.Errorf("opcua channel: security policy %q cannot be offered", o.PolicyURI)
		}
		switch {
		case o.PolicyURI == ua.SecurityPolicyURINone && o.Mode != ua.MessageSecurityModeNone,
			o.PolicyURI != ua.SecurityPolicyURINone && o.Mode != ua.MessageSecurityModeSign && o.Mode != ua.MessageSecurityModeSignAndEncrypt:
			return fmt.Errorf("opcua channel: security mode %s cannot be used with %s", o.Mode, o.PolicyURI)
		}
		if o.PolicyURI != ua.SecurityPolicyURINone {
			secured = true
		}
	}
	if secured {
		if c.PrivateKey == nil || len(c.Certificate) == 0 {
			return errors.New("opcua channel: a secured policy needs the gateway certificate and private key")
		}
		cert, err := x509.ParseCertificate(c.Certificate)
		if err != nil {
			return fmt.Errorf("opcua channel: gateway certificate: %w", err)
		}
		pub, ok := cert.PublicKey.(*rsa.PublicKey)
		if !ok || !pub.Equal(&c.PrivateKey.PublicKey) {
			return errors.New("opcua channel: the gateway certificate does not match its private key")
		}
		for _, o := range c.Offers {
			if _, err := uapolicy.Asymmetric(o.PolicyURI, c.PrivateKey, nil); err != nil {
				return fmt.Errorf("opcua channel: gateway key for %s: %w", o.PolicyURI, err)
			}
		}
		if c.ValidateClient == nil {
			return errors.New("opcua channel: a secured policy needs ValidateClient")
		}
	}
	if c.ReceiveBufferSize == 0 {
		c.ReceiveBufferSize = defaultBufferSize
	}
	if c.SendBufferSize == 0 {
		c.SendBufferSize = defaultBufferSize
	}
	if c.ReceiveBufferSize < minBufferSize || c.SendBufferSize < minBufferSize {
		return fmt.Errorf("opcua channel: buffer sizes must be at least %d bytes", minBufferSize)
	}
	if c.MaxMessageSize == 0 {
		c.MaxMessageSize = defaultMaxMessageSize
	}
	if c.MaxChunkCount == 0 {
		c.MaxChunkCount = defaultMaxChunkCount
	}
	if err := defaultDecodedSize(&c.MaxDecodedSize); err != nil {
		return err
	}
	if c.MinTokenLifetime <= 0 {
		c.MinTokenLifetime = defaultMinLifetime
	}
	if c.MaxTokenLifetime <= 0 {
		c.MaxTokenLifetime = defaultMaxLifetime
	}
	if c.MinTokenLifetime > c.MaxTokenLifetime {
		c.MinTokenLifetime = c.MaxTokenLifetime
	}
	if c.HelloTimeout <= 0 {
		c.HelloTimeout = defaultHelloTimeout
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = defaultWriteTimeout
	}
	return nil
}

// offered reports whether the pair is offered, and which refusal applies
// when it is not.
func (c *Config) offered(policy string, mode ua.MessageSecurityMode) ua.StatusCode {
	policyKnown := false
	for _, o := range c.Offers {
		if o.PolicyURI == policy {
			policyKnown = true
			if o.Mode == mode {
				return ua.StatusOK
			}
		}
	}
	if !policyKnown {
		return ua.StatusBadSecurityPolicyRejected
	}
	return ua.StatusBadSecurityModeRejected
}

func (c *Config) policyOffered(policy string) bool {
	for _, o := range c.Offers {
		if o.PolicyURI == policy {
			return true
		}
	}
	return false
}

// revisedLifetime clamps the lifetime (ms) a client asks for.
func (c *Config) revisedLifetime(requestedMS uint32) time.Duration {
	d := time.Duration(requestedMS) * time.Millisecond
	if requestedMS == 0 || d > c.MaxTokenLifetime {
		d = c.MaxTokenLifetime
	}
	if d < c.MinTokenLifetime {
		d = c.MinTokenLifetime
	}
	return d
}
