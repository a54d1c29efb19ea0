package opcua

import (
	"context"
	"errors"
	"io"
	"net"
	"sync/atomic"

	"github.com/gopcua/opcua/ua"

	"github.com/interlock-ics/interlock/certs"
	"github.com/interlock-ics/interlock/gateway"
	"github.com/interlock-ics/interlock/gateway/opcua/channel"
)

// Serve opens the client's secure channel (offering only the configured
// policies and modes, validating the client certificate against the PKI)
// and answers its requests until the channel closes.
func (e *Engine) Serve(ctx context.Context, nc net.Conn, s *gateway.Session) error {
	// The channel's refusals name the session the request belongs to once
	// the channel carries one (conn.recordSession), else the connection.
	var served atomic.Pointer[conn]
	recordAs := func(token *ua.NodeID) *gateway.Session {
		if c := served.Load(); c != nil {
			return c.recordSession(token)
		}
		return s
	}
	cfg := &channel.Config{
		// the engine closes the channel when the requests in flight are
		// answered (a stopping gateway shuts the reading side first)
		OpenAtEOF:      true,
		EndpointURL:    e.endpointURL,
		Certificate:    e.cert,
		PrivateKey:     e.key,
		MaxMessageSize: e.opts.Limits.MaxMessageSize,
		MaxChunkCount:  e.opts.Limits.MaxChunkCount,
		MaxDecodedSize: e.opts.Limits.MaxDecodedSize,
		PartialBudget:  e.partials,
		// lifted by ActivateSession (conn.sessionOnChannel)
		MaxMessageSizeBeforeSession: MaxMessageSizeBeforeSession,
	}
	for _, o := range e.opts.offers {
		cfg.Offers = append(cfg.Offers, channel.Offer{PolicyURI: o.PolicyURI, Mode: o.Mode})
	}
	if !e.offered(ua.SecurityPolicyURINone, ua.MessageSecurityModeNone) {
		// Discovery: clients ask for the endpoints over a None channel
		// before they open a secured one (OPC 10000-4 §5.4). Such a channel
		// answers GetEndpoints and FindServers only.
		cfg.Offers = append(cfg.Offers, channel.Offer{PolicyURI: ua.SecurityPolicyURINone, Mode: ua.MessageSecurityModeNone})
	}
	if e.validate != nil {
		cfg.ValidateClient = func(chain []byte) error {
			_, err := e.validate(chain, "")
			if err == nil {
				return nil
			}
			// The client learns only that the checks failed; the audit
			// record says which one (OPC 10000-4 §6.5.5).
			call := &gateway.Call{Target: s.Target,
				Operation: gateway.Operation{Function: "open_secure_channel", Access: gateway.AccessSession}}
			call.Operation.String("cert_thumbprint", certs.Thumbprint(chain))
			e.pipeline.Reject(ctx, recordAs(nil), call, "certificate_invalid", err.Error(), "Bad_SecurityChecksFailed")
			return ua.StatusBadSecurityChecksFailed
		}
	}
	cfg.Refused = func(handle, typeID uint32, token *ua.NodeID, code ua.StatusCode, err error) {
		call := &gateway.Call{Target: s.Target,
			Operation: gateway.Operation{Function: "request", Access: gateway.AccessDiagnostic}}
		call.Operation.Int("request_handle", int64(handle))
		call.Operation.Int("type_id", int64(typeID))
		reason := "undecodable"
		switch code {
		case ua.StatusBadServiceUnsupported:
			reason = "service_unsupported"
		case ua.StatusBadSecurityPolicyRejected:
			reason = "security_policy_rejected"
		}
		e.pipeline.Reject(ctx, recordAs(token), call, reason, err.Error(), statusName(code))
	}
	ch, err := channel.Accept(ctx, nc, cfg)
	if err != nil {
		e.channelError(ctx, s, "open_secure_channel", err)
		return err
	}
	defer ch.Close()
	c := newConn(e, channelAdapter{ch}, s)
	served.Store(c)
	return c.serve(ctx) // which records why the channel failed
}

// channelError records why a secure channel was refused or ended (a bad
// message, a limit, an untrusted certificate); a client that just leaves
// is no error.
func (e *Engine) channelError(ctx context.Context, s *gateway.Session, function string, err error) {
	if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || ctx.Err() != nil {
		return
	}
	call := &gateway.Call{Target: s.Target,
		Operation: gateway.Operation{Function: function, Access: gateway.AccessSession}}
	e.pipeline.Reject(ctx, s, call, "channel_error", err.Error(), statusName(channel.StatusOf(err)))
}

// channelAdapter is a channel.Channel as the engine's secureChannel.
type channelAdapter struct{ *channel.Channel }

func (a channelAdapter) Next() (*request, error) {
	r, err := a.Channel.Next()
	if err != nil {
		return nil, err
	}
	return &request{ID: r.ID, Body: r.Body}, nil
}
