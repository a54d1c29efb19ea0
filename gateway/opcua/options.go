package opcua

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/gopcua/opcua/ua"

	"github.com/interlock-ics/interlock/gateway"
	"github.com/interlock-ics/interlock/gateway/opcua/channel"
)

// Options is an opcua listener's own configuration section (`opcua:`).
type Options struct {
	// PKI is the gateway's certificate folder (OPC 10000-12 layout, made by
	// `interlock certs init`); relative to the configuration file.
	PKI string `yaml:"pki"`
	// UserPKI, when set, is a certificate folder of its own (the same
	// layout) whose trusted and issuer certificates alone are accepted for
	// X.509 user tokens: a certificate trusted as a client application is
	// then not a user's. Without it user certificates are checked against
	// PKI, like application certificates.
	UserPKI string `yaml:"user_pki"`
	// EndpointURL is the URL the gateway announces in its endpoints; the
	// default is built from the listen address.
	EndpointURL string `yaml:"endpoint_url"`
	// SecurityPolicies offered to clients, by short name: None,
	// Basic256Sha256, Aes128_Sha256_RsaOaep, Aes256_Sha256_RsaPss.
	SecurityPolicies []string `yaml:"security_policies"`
	// SecurityModes offered with every policy other than None: Sign,
	// SignAndEncrypt (default both).
	SecurityModes []string `yaml:"security_modes"`
	// Anonymous lets clients in without a user (default false).
	Anonymous bool `yaml:"anonymous"`
	// Users is "passthrough" (the upstream checks user name and password)
	// or the path of a YAML file of users with password hashes.
	Users string `yaml:"users"`
	// UpstreamSecurityPolicy and UpstreamSecurityMode are the gateway's own
	// leg to the server (default None / None).
	UpstreamSecurityPolicy string `yaml:"upstream_security_policy"`
	UpstreamSecurityMode   string `yaml:"upstream_security_mode"`
	// UpstreamIdentity is how the gateway logs in upstream: same (the
	// client's user name and password), service (UpstreamUser and the
	// password in UpstreamPasswordFile), certificate (the gateway's own
	// certificate as an X.509 user token) or anonymous. Default: same with
	// users passthrough, anonymous otherwise.
	UpstreamIdentity     string `yaml:"upstream_identity"`
	UpstreamUser         string `yaml:"upstream_user"`
	UpstreamPasswordFile string `yaml:"upstream_password_file"`
	// UpstreamTokenLifetime is the security token lifetime the gateway asks
	// the server for on its own leg (default 1h, at least 1s); the token
	// is renewed at 75 % of what the server grants.
	UpstreamTokenLifetime time.Duration `yaml:"upstream_token_lifetime"`

	Limits LimitOptions `yaml:"limits"`

	// Resolved by checkAndSetDefaults.
	offers      []offer
	upstreamURI string
	upstreamMod ua.MessageSecurityMode
	upstreamPwd string
}

// LimitOptions bound what one listener's sessions take on.
type LimitOptions struct {
	MaxSessions int `yaml:"max_sessions"`
	// MaxSessionsPerSource bounds the sessions created from one source
	// address (default DefaultMaxSessionsPerSource): one connection may
	// carry many sessions, and max_conns_per_source bounds only the
	// connections.
	MaxSessionsPerSource       int `yaml:"max_sessions_per_source"`
	MaxSubscriptionsPerSession int `yaml:"max_subscriptions_per_session"`
	// MaxMonitoredItemsPerSession bounds the monitored items one session
	// holds (the gateway keeps each one's node to decide it again when the
	// policy changes); CreateMonitoredItems beyond it is answered
	// Bad_TooManyMonitoredItems.
	MaxMonitoredItemsPerSession int           `yaml:"max_monitored_items_per_session"`
	SessionTimeout              time.Duration `yaml:"session_timeout"` // the most a client may ask for
	MaxMessageSize              uint32        `yaml:"max_message_size"`
	MaxChunkCount               uint32        `yaml:"max_chunk_count"`
	// MaxPartialBytes bounds the bytes all connections of the listener
	// hold together in requests whose final chunk has not come (default
	// 4 × max_message_size, at least max_message_size).
	MaxPartialBytes int64 `yaml:"max_partial_bytes"`
	// MaxDecodedSize bounds what one message, a request or an upstream
	// response, may take decoded (about, in bytes; default 64 MiB, at
	// least 1 MiB): small values decode to many times their encoded size,
	// so a message within max_message_size may still be refused, with
	// Bad_EncodingLimitsExceeded. Raise it for very large legitimate
	// responses (a HistoryRead of hundreds of thousands of values).
	MaxDecodedSize int64 `yaml:"max_decoded_size"`
	// MaxRequestsPerSession bounds the requests of one connection in flight
	// at once (Publish requests included); one more is answered
	// Bad_TooManyOperations.
	MaxRequestsPerSession int `yaml:"max_requests_per_session"`
	// MaxPublishTimeout bounds how long a forwarded Publish may wait upstream.
	MaxPublishTimeout time.Duration `yaml:"max_publish_timeout"`
}

// DefaultMaxSessionsPerSource is a source address's share of max_sessions
// when none is configured: the share it has of a listener's connections
// (a quarter, 2 to 16), so that one host cannot take every session.
func DefaultMaxSessionsPerSource(maxSessions int) int {
	return gateway.DefaultMaxConnsPerSource(maxSessions)
}

// Defaults.
const (
	DefaultMaxSessions                 = 100
	DefaultMaxSubscriptionsPerSession  = 10
	DefaultMaxMonitoredItemsPerSession = 20000
	DefaultSessionTimeout              = 10 * time.Minute
	MinSessionTimeout                  = 10 * time.Second
	DefaultMaxMessageSize              = 16 << 20
	DefaultMaxChunkCount               = 512
	DefaultMaxRequestsPerSession       = 64
	DefaultMaxPublishTimeout           = 10 * time.Minute
	DefaultUpstreamTokenLifetime       = time.Hour
	MinUpstreamTokenLifetime           = time.Second
)

// MaxMessageSizeBeforeSession bounds a request on a channel without an
// activated session: only discovery and the session services are valid
// then, all of them small, certificate chains included.
const MaxMessageSizeBeforeSession = 1 << 20

// Identity kinds of upstream_identity.
const (
	IdentitySame        = "same"
	IdentityService     = "service"
	IdentityCertificate = "certificate"
	IdentityAnonymous   = "anonymous"
)

// UsersPassthrough is the users value that leaves password checks to the upstream.
const UsersPassthrough = "passthrough"

// offer is one security policy and mode the gateway serves.
type offer struct {
	PolicyURI string
	Mode      ua.MessageSecurityMode
}

// Security policies by short name (the name used in the configuration, the
// policy input and the audit record).
var policyURIs = map[string]string{
	"None":                  ua.SecurityPolicyURINone,
	"Basic256Sha256":        ua.SecurityPolicyURIBasic256Sha256,
	"Aes128_Sha256_RsaOaep": ua.SecurityPolicyURIAes128Sha256RsaOaep,
	"Aes256_Sha256_RsaPss":  ua.SecurityPolicyURIAes256Sha256RsaPss,
}

// policyName returns the short name of a security policy URI.
func policyName(uri string) string {
	if i := strings.LastIndexByte(uri, '#'); i >= 0 {
		return uri[i+1:]
	}
	return uri
}

// modeName returns the policy input name of a message security mode.
func modeName(m ua.MessageSecurityMode) string {
	switch m {
	case ua.MessageSecurityModeNone:
		return "None"
	case ua.MessageSecurityModeSign:
		return "Sign"
	case ua.MessageSecurityModeSignAndEncrypt:
		return "SignAndEncrypt"
	}
	return "Invalid"
}

func parseMode(s string) (ua.MessageSecurityMode, bool) {
	switch s {
	case "None":
		return ua.MessageSecurityModeNone, true
	case "Sign":
		return ua.MessageSecurityModeSign, true
	case "SignAndEncrypt":
		return ua.MessageSecurityModeSignAndEncrypt, true
	}
	return ua.MessageSecurityModeInvalid, false
}

func (o *Options) checkAndSetDefaults(baseDir string) error {
	if len(o.SecurityPolicies) == 0 {
		o.SecurityPolicies = []string{"Basic256Sha256"}
	}
	if len(o.SecurityModes) == 0 {
		o.SecurityModes = []string{"Sign", "SignAndEncrypt"}
	}
	var modes []ua.MessageSecurityMode
	for i, m := range o.SecurityModes {
		mode, ok := parseMode(m)
		if !ok || mode == ua.MessageSecurityModeNone {
			return fmt.Errorf("security_modes[%d]: %q is not one of Sign, SignAndEncrypt", i, m)
		}
		modes = append(modes, mode)
	}
	o.offers = nil
	for i, p := range o.SecurityPolicies {
		uri, ok := policyURIs[p]
		if !ok {
			return fmt.Errorf("security_policies[%d]: %q is not one of None, Basic256Sha256, Aes128_Sha256_RsaOaep, Aes256_Sha256_RsaPss", i, p)
		}
		if uri == ua.SecurityPolicyURINone {
			o.offers = append(o.offers, offer{uri, ua.MessageSecurityModeNone})
			continue
		}
		for _, m := range modes {
			o.offers = append(o.offers, offer{uri, m})
		}
	}
	if o.PKI == "" {
		return errors.New("pki: missing: the gateway's certificate folder (interlock certs init --pki DIR)")
	}
	o.PKI = resolve(baseDir, o.PKI)
	if o.UserPKI != "" {
		o.UserPKI = resolve(baseDir, o.UserPKI)
		if o.UserPKI == o.PKI {
			return errors.New("user_pki: the same folder as pki: user certificates would again be trusted as applications")
		}
	}
	switch o.Users {
	case "":
		if !o.Anonymous {
			return errors.New("users: missing: passthrough or a users file (or anonymous: true)")
		}
	case UsersPassthrough:
	default:
		o.Users = resolve(baseDir, o.Users)
	}

	if o.UpstreamSecurityPolicy == "" {
		o.UpstreamSecurityPolicy = "None"
	}
	uri, ok := policyURIs[o.UpstreamSecurityPolicy]
	if !ok {
		return fmt.Errorf("upstream_security_policy: %q is not one of None, Basic256Sha256, Aes128_Sha256_RsaOaep, Aes256_Sha256_RsaPss", o.UpstreamSecurityPolicy)
	}
	o.upstreamURI = uri
	if o.UpstreamSecurityMode == "" {
		o.UpstreamSecurityMode = "None"
		if uri != ua.SecurityPolicyURINone {
			o.UpstreamSecurityMode = "SignAndEncrypt"
		}
	}
	mode, ok := parseMode(o.UpstreamSecurityMode)
	if !ok {
		return fmt.Errorf("upstream_security_mode: %q is not one of None, Sign, SignAndEncrypt", o.UpstreamSecurityMode)
	}
	if (mode == ua.MessageSecurityModeNone) != (uri == ua.SecurityPolicyURINone) {
		return fmt.Errorf("upstream_security_mode: %s does not go with upstream_security_policy %s", o.UpstreamSecurityMode, o.UpstreamSecurityPolicy)
	}
	o.upstreamMod = mode

	if o.UpstreamIdentity == "" {
		o.UpstreamIdentity = IdentityAnonymous
		if o.Users == UsersPassthrough {
			o.UpstreamIdentity = IdentitySame
		}
	}
	switch o.UpstreamIdentity {
	case IdentitySame, IdentityCertificate, IdentityAnonymous:
	case IdentityService:
		if o.UpstreamUser == "" {
			return errors.New("upstream_user: missing: the service account for upstream_identity service")
		}
		if o.UpstreamPasswordFile == "" {
			return errors.New("upstream_password_file: missing: the file holding the service account's password")
		}
		b, err := os.ReadFile(resolve(baseDir, o.UpstreamPasswordFile))
		if err != nil {
			return fmt.Errorf("upstream_password_file: %v", err)
		}
		o.upstreamPwd = strings.TrimRight(string(b), "\r\n")
	default:
		return fmt.Errorf("upstream_identity: %q is not one of same, service, certificate, anonymous", o.UpstreamIdentity)
	}
	if o.Users == UsersPassthrough && o.UpstreamIdentity != IdentitySame {
		return errors.New("upstream_identity: users passthrough needs upstream_identity same (the upstream checks the password)")
	}
	switch {
	case o.UpstreamTokenLifetime == 0:
		o.UpstreamTokenLifetime = DefaultUpstreamTokenLifetime
	case o.UpstreamTokenLifetime < MinUpstreamTokenLifetime:
		return fmt.Errorf("upstream_token_lifetime: %v is below %v", o.UpstreamTokenLifetime, MinUpstreamTokenLifetime)
	}

	l := &o.Limits
	switch {
	case l.MaxSessions < 0:
		return fmt.Errorf("limits.max_sessions: %d is negative", l.MaxSessions)
	case l.MaxSessionsPerSource < 0:
		return fmt.Errorf("limits.max_sessions_per_source: %d is negative", l.MaxSessionsPerSource)
	case l.MaxSubscriptionsPerSession < 0:
		return fmt.Errorf("limits.max_subscriptions_per_session: %d is negative", l.MaxSubscriptionsPerSession)
	case l.MaxMonitoredItemsPerSession < 0:
		return fmt.Errorf("limits.max_monitored_items_per_session: %d is negative", l.MaxMonitoredItemsPerSession)
	case l.SessionTimeout < 0:
		return fmt.Errorf("limits.session_timeout: %v is negative", l.SessionTimeout)
	case l.MaxRequestsPerSession < 0:
		return fmt.Errorf("limits.max_requests_per_session: %d is negative", l.MaxRequestsPerSession)
	case l.MaxPublishTimeout < 0:
		return fmt.Errorf("limits.max_publish_timeout: %v is negative", l.MaxPublishTimeout)
	case l.MaxMessageSize != 0 && l.MaxMessageSize < 8192:
		return fmt.Errorf("limits.max_message_size: %d is below 8192", l.MaxMessageSize)
	}
	if l.MaxSessions == 0 {
		l.MaxSessions = DefaultMaxSessions
	}
	switch {
	case l.MaxSessionsPerSource == 0:
		l.MaxSessionsPerSource = DefaultMaxSessionsPerSource(l.MaxSessions)
	case l.MaxSessionsPerSource > l.MaxSessions:
		return fmt.Errorf("limits.max_sessions_per_source: %d is more than limits.max_sessions (%d)", l.MaxSessionsPerSource, l.MaxSessions)
	}
	if l.MaxSubscriptionsPerSession == 0 {
		l.MaxSubscriptionsPerSession = DefaultMaxSubscriptionsPerSession
	}
	if l.MaxMonitoredItemsPerSession == 0 {
		l.MaxMonitoredItemsPerSession = DefaultMaxMonitoredItemsPerSession
	}
	if l.SessionTimeout == 0 {
		l.SessionTimeout = DefaultSessionTimeout
	}
	if l.SessionTimeout < MinSessionTimeout {
		return fmt.Errorf("limits.session_timeout: %v is below %v", l.SessionTimeout, MinSessionTimeout)
	}
	if l.MaxMessageSize == 0 {
		l.MaxMessageSize = DefaultMaxMessageSize
	}
	if l.MaxChunkCount == 0 {
		l.MaxChunkCount = DefaultMaxChunkCount
	}
	switch {
	case l.MaxPartialBytes == 0:
		l.MaxPartialBytes = 4 * int64(l.MaxMessageSize)
	case l.MaxPartialBytes < int64(l.MaxMessageSize):
		return fmt.Errorf("limits.max_partial_bytes: %d is below max_message_size (%d): no message of that size could arrive", l.MaxPartialBytes, l.MaxMessageSize)
	}
	if l.MaxDecodedSize == 0 {
		l.MaxDecodedSize = channel.DefaultMaxDecodedSize
	}
	if l.MaxDecodedSize < channel.MinMaxDecodedSize {
		return fmt.Errorf("limits.max_decoded_size: %d is below the least, %d (1 MiB)", l.MaxDecodedSize, channel.MinMaxDecodedSize)
	}
	if l.MaxRequestsPerSession == 0 {
		l.MaxRequestsPerSession = DefaultMaxRequestsPerSession
	}
	if l.MaxPublishTimeout == 0 {
		l.MaxPublishTimeout = DefaultMaxPublishTimeout
	}
	return nil
}

func resolve(baseDir, p string) string {
	if filepath.IsAbs(p) || baseDir == "" {
		return p
	}
	return filepath.Join(baseDir, p)
}
