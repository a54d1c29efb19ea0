package channel

import (
	"bytes"
	"crypto/rand"
	"crypto/sha1"
	"time"

	"github.com/gopcua/opcua/id"
	"github.com/gopcua/opcua/ua"
	"github.com/gopcua/opcua/uapolicy"
	"github.com/gopcua/opcua/uasc"
)

// handleOPN checks and answers an OpenSecureChannel request: the first one
// (issue) fixes the channel's policy, mode and client certificate; later ones
// (renew) must repeat them and get a new token with new keys.
func (c *Channel) handleOPN(f *frame, first bool) error {
	if f.chunk != 'F' {
		return errorf(ua.StatusBadTCPMessageTypeInvalid, "OpenSecureChannel in chunks is not supported")
	}
	sc, err := parseSecure(f)
	if err != nil {
		return err
	}
	policy := sc.asym.SecurityPolicyURI
	if first {
		if err := c.selectPolicy(sc); err != nil {
			return err
		}
	} else {
		if sc.channelID != c.id {
			return errorf(ua.StatusBadTCPSecureChannelUnknown, "secure channel id %d", sc.channelID)
		}
		if policy != c.policy {
			return errorf(ua.StatusBadSecurityPolicyRejected, "renewal with policy %q on a %q channel", policy, c.policy)
		}
		if c.asym != nil && (!bytes.Equal(sc.asym.SenderCertificate, c.remoteCert) || !bytes.Equal(sc.asym.ReceiverCertificateThumbprint, c.localThumb)) {
			return errorf(ua.StatusBadSecurityChecksFailed, "renewal with other certificates")
		}
	}

	plain := f.b[sc.head:]
	if c.asym != nil {
		if plain, err = c.asym.open(f.b, sc.head); err != nil {
			return err
		}
	}
	if len(plain) < seqHeaderLen {
		return errorf(ua.StatusBadDecodingError, "OpenSecureChannel without sequence header")
	}
	var sh uasc.SequenceHeader
	sh.Decode(plain)
	if err := c.in.check(sh.SequenceNumber); err != nil {
		return err
	}
	_, svc, err := decodeService(plain[seqHeaderLen:], c.cfg.MaxDecodedSize)
	if err != nil {
		return errorf(ua.StatusBadDecodingError, "OpenSecureChannel request: %v", err)
	}
	req, ok := svc.(*ua.OpenSecureChannelRequest)
	if !ok || req.RequestHeader == nil {
		return errorf(ua.StatusBadDecodingError, "OPN message carries %T", svc)
	}

	if first {
		if req.RequestType != ua.SecurityTokenRequestTypeIssue {
			return errorf(ua.StatusBadRequestTypeInvalid, "first OpenSecureChannel must issue a token")
		}
		code := c.cfg.offered(policy, req.SecurityMode)
		if c.discoveryOnly {
			code = ua.StatusOK
			if req.SecurityMode != ua.MessageSecurityModeNone {
				code = ua.StatusBadSecurityModeRejected
			}
		}
		if code != ua.StatusOK {
			return errorf(code, "%s with %s is not offered", req.SecurityMode, policy)
		}
		c.mode = req.SecurityMode
	} else {
		if req.RequestType != ua.SecurityTokenRequestTypeRenew {
			return errorf(ua.StatusBadRequestTypeInvalid, "an open channel can only renew its token")
		}
		if req.SecurityMode != c.mode {
			return errorf(ua.StatusBadSecurityModeRejected, "renewal with mode %s on a %s channel", req.SecurityMode, c.mode)
		}
	}
	var serverNonce []byte
	if c.asym != nil {
		n := c.asym.algo.NonceLength()
		if len(req.ClientNonce) != n {
			return errorf(ua.StatusBadNonceInvalid, "client nonce of %d bytes, want %d", len(req.ClientNonce), n)
		}
		// renewals re-check trust: a certificate revoked since keeps no channel
		if err := c.cfg.ValidateClient(c.remoteCert); err != nil {
			return &Error{Code: statusOr(err, ua.StatusBadSecurityChecksFailed), Reason: "client certificate: " + err.Error(), private: true}
		}
		serverNonce = make([]byte, n)
		if _, err := rand.Read(serverNonce); err != nil {
			return errorf(ua.StatusBadInternalError, "nonce: %v", err)
		}
	} else {
		serverNonce = []byte{}
	}

	tok := &token{
		id:        c.nextTokenID,
		createdAt: time.Now(),
		lifetime:  c.cfg.revisedLifetime(req.RequestedLifetime),
	}
	c.nextTokenID++
	if c.nextTokenID == 0 {
		c.nextTokenID = 1
	}
	if c.asym != nil {
		// uapolicy.Symmetric(local, remote): the keys for receiving derive
		// from our nonce as secret and the client's as seed (Part 6 §6.7.5)
		if tok.sym, err = uapolicy.Symmetric(policy, serverNonce, req.ClientNonce); err != nil {
			return errorf(ua.StatusBadInternalError, "key derivation: %v", err)
		}
	}
	if first {
		c.id = nonzeroRandom()
		c.maxBody = symMaxBody(c.sendChunk, c.mode, tok.sym)
	}

	resp := &ua.OpenSecureChannelResponse{
		ResponseHeader:        responseHeader(req.RequestHeader.RequestHandle, ua.StatusOK),
		ServerProtocolVersion: 0,
		SecurityToken: &ua.ChannelSecurityToken{
			ChannelID:       c.id,
			TokenID:         tok.id,
			CreatedAt:       tok.createdAt,
			RevisedLifetime: uint32(tok.lifetime / time.Millisecond),
		},
		ServerNonce: serverNonce,
	}

	// Part 4 §5.5.2 / Part 6 §6.7.4: the previous token stays valid for
	// receiving, and keeps securing what we send, until the client first
	// uses the new one.
	c.mu.Lock()
	if first {
		c.current, c.sendTok = tok, tok
	} else {
		c.previous, c.current = c.current, tok
		if c.sendTok != c.previous {
			// the client never used the token before: it is gone now
			c.sendTok = c.previous
		}
	}
	c.mu.Unlock()
	return c.writeOPN(sh.RequestID, resp)
}

// selectPolicy checks the policy and certificates of the first OPN and sets
// up the asymmetric crypto.
func (c *Channel) selectPolicy(sc *secureChunk) error {
	policy := sc.asym.SecurityPolicyURI
	switch {
	case supportedPolicies[policy] && c.cfg.policyOffered(policy):
	case policy == ua.SecurityPolicyURINone && c.cfg.DiscoveryOverNone:
		c.discoveryOnly = true
	default:
		return errorf(ua.StatusBadSecurityPolicyRejected, "security policy %q is not offered", policy)
	}
	c.policy = policy
	if policy == ua.SecurityPolicyURINone {
		return nil
	}
	if !bytes.Equal(sc.asym.ReceiverCertificateThumbprint, c.localThumb) {
		return errorf(ua.StatusBadSecurityChecksFailed, "receiver certificate thumbprint does not match the gateway certificate")
	}
	if len(sc.asym.SenderCertificate) == 0 {
		return errorf(ua.StatusBadCertificateInvalid, "no client certificate")
	}
	asym, cert, err := newAsymmetric(policy, c.cfg.PrivateKey, sc.asym.SenderCertificate, "client")
	if err != nil {
		return err
	}
	c.asym = asym
	c.remoteCert = bytes.Clone(sc.asym.SenderCertificate)
	sum := sha1.Sum(cert.Raw)
	c.remoteThumb = sum[:]
	return nil
}

// writeOPN sends an OpenSecureChannel response, secured asymmetrically.
func (c *Channel) writeOPN(reqID uint32, resp *ua.OpenSecureChannelResponse) error {
	body, err := encodeService(id.OpenSecureChannelResponse_Encoding_DefaultBinary, resp)
	if err != nil {
		return errorf(ua.StatusBadEncodingError, "OpenSecureChannel response: %v", err)
	}
	hdr := &uasc.AsymmetricSecurityHeader{SecurityPolicyURI: c.policy}
	if c.asym != nil {
		hdr.SenderCertificate = c.cfg.Certificate
		hdr.ReceiverCertificateThumbprint = c.remoteThumb
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	b, err := buildOPN(c.id, hdr, c.out.next(), reqID, body, c.asym)
	if err != nil {
		return err
	}
	if len(b) > c.sendChunk {
		return errorf(ua.StatusBadTCPMessageTooLarge, "OpenSecureChannel response of %d bytes exceeds the client's %d byte buffer", len(b), c.sendChunk)
	}
	return c.writeLocked(b)
}
