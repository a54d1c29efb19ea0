package opcua

import (
	"context"
	"crypto/subtle"
	"errors"
	"io"
	"time"

	"github.com/gopcua/opcua/ua"

	"github.com/interlock-ics/interlock/gateway"
	"github.com/interlock-ics/interlock/gateway/opcua/channel"
)

// A session outlives its secure channel (OPC 10000-4 §5.7.2): when the
// channel closes under it (the network, the client's process), the
// session is kept, bound to no channel, until its timeout, and the client
// may activate it on a new channel. Everything it holds upstream — its
// upstream session, subscriptions, monitored items — carries on meanwhile.

// channelLost says whether a channel ended by no fault of its client's —
// closed by it (CloseSecureChannel), its connection dropped, or silent
// until its security token expired (a network break the TCP stack did not
// notice) — rather than for a protocol or security violation (an error
// with a status code), after which its sessions end with it.
func channelLost(err error) bool {
	var sc interface{ StatusCode() ua.StatusCode }
	return err == nil || errors.Is(err, io.EOF) || errors.Is(err, channel.ErrTokenExpired) || !errors.As(err, &sc)
}

// detach unbinds an activated session from its closing channel c, and
// reports whether it did: a session not activated yet ends with c.
func (s *uaSession) detach(c *conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.activated && !s.closed && s.conn.CompareAndSwap(c, nil)
}

// mayTake says whether ActivateSession on this channel may try to move s
// here: s is between channels, or it is activated on another channel and
// this one is SignAndEncrypt, where refuseMove can check that the new
// channel was opened with the session's certificate. A client that
// reconnects after a network break usually finds its old channel still
// open on the gateway's side (the break unnoticed, a half-open TCP
// connection); at None, nothing proves the new channel is the client's.
func (c *conn) mayTake(s *uaSession) bool {
	from := s.conn.Load()
	return from == nil || (s.live.Load() && c.mode == ua.MessageSecurityModeSignAndEncrypt)
}

// claim binds s to channel c if it is still open and bound to from (nil:
// between channels); under s.mu, so that a channel ending its sessions
// (endOn) and a move cannot both take one.
func (s *uaSession) claim(from, c *conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return !s.closed && s.conn.CompareAndSwap(from, c)
}

// endOn marks s closed if it is still bound to channel c, and reports
// whether it was: the caller ends it. A session that moved away meanwhile
// is not c's to end.
func (s *uaSession) endOn(c *conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conn.Load() != c {
		return false
	}
	s.closed = true
	return true
}

// refuseMove checks that a session between channels may be activated on
// this one (OPC 10000-4 §5.7.3): the channel's security policy and mode
// are the session's, not Sign, and it was opened with the certificate
// that created the session. It records and answers a refusal, else nil.
func (c *conn) refuseMove(ctx context.Context, h *ua.RequestHeader, s *uaSession) ua.Response {
	const fn = "activate_session"
	switch {
	case c.policyURI != s.policyURI || c.mode != s.mode:
		return c.refuse(ctx, h, fn, "security_policy_rejected",
			"a session of "+policyName(s.policyURI)+"/"+modeName(s.mode)+" activated on a "+
				policyName(c.policyURI)+"/"+modeName(c.mode)+" secure channel", ua.StatusBadSecurityPolicyRejected)
	case c.mode == ua.MessageSecurityModeSign:
		// The user token would cross the new channel unencrypted.
		return c.refuse(ctx, h, fn, "security_mode_insufficient",
			"a session moves to a new secure channel only at SignAndEncrypt or None", ua.StatusBadSecurityModeInsufficient)
	case !sameLeaf(c.remoteCert, s.clientCert):
		return c.refuse(ctx, h, fn, "certificate_invalid",
			"the new secure channel's certificate is not the one that created the session", ua.StatusBadSecurityChecksFailed)
	}
	return nil
}

// moveSession binds a session between channels to this one, after its
// client proved the same application and user (activateSession; with
// users passthrough, here: the password the server took at login): the
// policy decides session.open again, from the new channel's source, and
// the session's records from then on name that source; a refusal ends the
// session. The session.open record counts the moves (session.resumed).
func (c *conn) moveSession(ctx context.Context, h *ua.RequestHeader, s *uaSession, from *conn, prev, gs *gateway.Session,
	id identity, nonce, userCert []byte, userUntil time.Time) ua.Response {
	if c.e.opts.Users == UsersPassthrough && id.kind == IdentitySame {
		// The server checked the password at the session's first
		// activation; a move must bring the same one.
		s.mu.Lock()
		up := s.up
		s.mu.Unlock()
		if up == nil || subtle.ConstantTimeCompare([]byte(up.id.password), []byte(id.password)) != 1 {
			c.e.logins.Failed(gs.Source.IP, time.Now())
			c.e.pipeline.AuthFailed(ctx, gs, "a password other than the one the session logged in with, on a new secure channel")
			return fault(h, ua.StatusBadUserAccessDenied)
		}
	}
	if !s.claim(from, c) {
		return c.refuse(ctx, h, "activate_session", "session_of_another_channel",
			"the session was activated on another secure channel meanwhile", ua.StatusBadSecureChannelIDInvalid)
	}
	gs.ID, gs.Started, gs.Resumed = prev.ID, prev.Started, prev.Resumed+1
	gs.Log = c.base.Log.With().Str("ua_session", gs.ID).Logger()
	s.decide.Lock()
	ok := c.e.pipeline.Open(ctx, gs)
	s.decide.Unlock()
	if !ok {
		c.e.endSession(ctx, s, errMoveRefused)
		return fault(h, ua.StatusBadUserAccessDenied)
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return fault(h, ua.StatusBadSessionClosed)
	}
	s.gs, s.nonce, s.userCert = gs, nonce, userCert
	s.mu.Unlock()
	s.checkCertsAfter(s.appUntil, userUntil)
	c.sessionOnChannel()
	ev := gs.Log.Info().Int("resumed", gs.Resumed).Uint32("secure_channel", c.ch.ID())
	if from != nil {
		ev = ev.Uint32("left_open_secure_channel", from.ch.ID())
	}
	ev.Msg("session activated on a new secure channel")
	return &ua.ActivateSessionResponse{ResponseHeader: header(h, ua.StatusOK), ServerNonce: nonce}
}

// errMoveRefused ends a session whose session.open the policy refused on
// a new secure channel.
var errMoveRefused = errors.New("ended by the gateway: the policy refused the session on a new secure channel")
