package opcua

import (
	"github.com/gopcua/opcua/ua"
	"github.com/gopcua/opcua/uapolicy"
)

// Transport profile of opc.tcp with the binary encoding.
const transportProfileBinary = "http://opcfoundation.org/UA-Profile/Transport/uatcp-uasc-uabinary"

// User token policy ids the gateway announces.
const (
	tokenAnonymous = "anonymous"
	tokenUserName  = "username"
	tokenX509      = "x509"
)

// application describes the gateway as a server.
func (e *Engine) application() *ua.ApplicationDescription {
	return &ua.ApplicationDescription{
		ApplicationURI:  e.appURI,
		ProductURI:      "urn:interlock-ics:interlock",
		ApplicationName: ua.NewLocalizedText("Interlock OPC UA gateway"),
		ApplicationType: ua.ApplicationTypeServer,
		DiscoveryURLs:   []string{e.endpointURL},
	}
}

// endpoints are the offered security policies and modes, each with the
// gateway's own certificate and the user tokens it takes.
func (e *Engine) endpoints() []*ua.EndpointDescription {
	app := e.application()
	out := make([]*ua.EndpointDescription, 0, len(e.opts.offers))
	for _, o := range e.opts.offers {
		out = append(out, &ua.EndpointDescription{
			EndpointURL:         e.endpointURL,
			Server:              app,
			ServerCertificate:   e.cert,
			SecurityMode:        o.Mode,
			SecurityPolicyURI:   o.PolicyURI,
			UserIdentityTokens:  e.tokenPolicies(o.PolicyURI),
			TransportProfileURI: transportProfileBinary,
			SecurityLevel:       uapolicy.SecurityLevel(o.PolicyURI, o.Mode),
		})
	}
	return out
}

// tokenPolicies are the user tokens of an endpoint. UserName and X.509
// tokens name the policy that encrypts the password or signs the token:
// the channel's, or under None the strongest policy the gateway offers, so
// that a password never crosses the network in the clear.
func (e *Engine) tokenPolicies(channelPolicy string) []*ua.UserTokenPolicy {
	tp := e.userTokenPolicy(channelPolicy)
	var out []*ua.UserTokenPolicy
	if e.opts.Anonymous {
		out = append(out, &ua.UserTokenPolicy{PolicyID: tokenAnonymous, TokenType: ua.UserTokenTypeAnonymous})
	}
	if e.opts.Users != "" {
		out = append(out, &ua.UserTokenPolicy{PolicyID: tokenUserName, TokenType: ua.UserTokenTypeUserName, SecurityPolicyURI: tp})
	}
	if e.validate != nil {
		out = append(out, &ua.UserTokenPolicy{PolicyID: tokenX509, TokenType: ua.UserTokenTypeCertificate, SecurityPolicyURI: tp})
	}
	return out
}

// offered reports whether a security policy and mode are configured.
func (e *Engine) offered(policyURI string, mode ua.MessageSecurityMode) bool {
	for _, o := range e.opts.offers {
		if o.PolicyURI == policyURI && o.Mode == mode {
			return true
		}
	}
	return false
}

// userTokenPolicy is the security policy of user tokens on a channel.
func (e *Engine) userTokenPolicy(channelPolicy string) string {
	if channelPolicy != ua.SecurityPolicyURINone {
		return channelPolicy
	}
	return ua.SecurityPolicyURIBasic256Sha256
}
