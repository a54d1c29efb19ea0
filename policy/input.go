package policy

import (
	"fmt"
	"slices"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"

	"github.com/interlock-ics/interlock/gateway"
)

// Keys of the policy input (ARCHITECTURE.md, "Contract: policy"), built once.
var (
	kTime      = ast.StringTerm(gateway.KeyTime)
	kGateway   = ast.StringTerm(gateway.KeyGateway)
	kListener  = ast.StringTerm(gateway.KeyListener)
	kSession   = ast.StringTerm(gateway.KeySession)
	kSource    = ast.StringTerm(gateway.KeySource)
	kPrincipal = ast.StringTerm(gateway.KeyPrincipal)
	kTarget    = ast.StringTerm(gateway.KeyTarget)
	kProtocol  = ast.StringTerm(gateway.KeyProtocol)
	kOperation = ast.StringTerm(gateway.KeyOperation)
	kTickets   = ast.StringTerm("tickets")

	kID             = ast.StringTerm(gateway.KeyID)
	kStarted        = ast.StringTerm(gateway.KeyStarted)
	kSecurityPolicy = ast.StringTerm(gateway.KeySecurityPolicy)
	kSecurityMode   = ast.StringTerm(gateway.KeySecurityMode)
	kResumed        = ast.StringTerm(gateway.KeyResumed)

	kIP    = ast.StringTerm(gateway.KeyIP)
	kPort  = ast.StringTerm(gateway.KeyPort)
	kName  = ast.StringTerm(gateway.KeyName)
	kOwner = ast.StringTerm(gateway.KeyOwner)

	kUser           = ast.StringTerm(gateway.KeyUser)
	kAuth           = ast.StringTerm(gateway.KeyAuth)
	kRoles          = ast.StringTerm(gateway.KeyRoles)
	kCertThumbprint = ast.StringTerm(gateway.KeyCertThumbprint)
	kApplicationURI = ast.StringTerm(gateway.KeyApplicationURI)

	kUpstream = ast.StringTerm(gateway.KeyUpstream)
	kUnitID   = ast.StringTerm(gateway.KeyUnitID)

	kFunction = ast.StringTerm(gateway.KeyFunction)
	kAccess   = ast.StringTerm(gateway.KeyAccess)
)

// contractTerms are string terms for the contract's keys and access kinds,
// built once so that the per-call part of the input allocates less. Read-only
// after init, so safe to share between sessions.
var contractTerms = func() map[string]*ast.Term {
	m := map[string]*ast.Term{}
	for _, s := range []string{
		gateway.KeyCode, gateway.KeyAddress, gateway.KeyQuantity, gateway.KeyValues,
		"node_id", "browse_path", "attribute", "object_id", "method_id", "arguments",
		string(gateway.AccessRead), string(gateway.AccessWrite), string(gateway.AccessExecute),
		string(gateway.AccessBrowse), string(gateway.AccessSubscribe), string(gateway.AccessSession),
		string(gateway.AccessDiagnostic), string(gateway.AccessProgram), gateway.FunctionSessionOpen,
	} {
		m[s] = ast.StringTerm(s)
	}
	return m
}()

// stringTerm returns the shared term for a contract string, else a new one.
func stringTerm(s string) *ast.Term {
	if t, ok := contractTerms[s]; ok {
		return t
	}
	return ast.InternedTerm(s)
}

// Input returns the policy input for c in session s, as Decide builds it but
// without the session cache. An operation field that cannot be converted
// becomes null here; Decide refuses such a call with policy_bad_input.
func Input(gatewayID string, s *gateway.Session, c *gateway.Call) ast.Value {
	v, _ := newSessionInput(gatewayID, s).input(c, noTickets, true)
	return v
}

// noTickets is input.tickets without a ticket store.
var noTickets = ast.ArrayTerm()

// sessionInputFor returns the session part of the input kept in s.Cache,
// rebuilt when the session's identity fields changed: an engine may fill in
// the user or security mode after the session opened.
func sessionInputFor(gatewayID string, s *gateway.Session) *sessionInput {
	si, ok := s.Cache.(*sessionInput)
	if !ok || !si.matches(gatewayID, s) {
		si = newSessionInput(gatewayID, s)
		s.Cache = si
	}
	return si
}

// cacheKey returns the decision cache key of c: the session's key followed
// by the call's. The slice is reused by the next call of the session.
func (si *sessionInput) cacheKey(c *gateway.Call, ticketGen uint64) ([]byte, bool) {
	var ok bool
	si.keyBuf, ok = appendCallKey(append(si.keyBuf[:0], si.key...), c, ticketGen)
	return si.keyBuf, ok
}

// sessionInput is the part of the input that is the same for every call of a
// session, with the values it was built from.
type sessionInput struct {
	gatewayID, id, listener, protocol string
	started                           time.Time
	securityPolicy, securityMode      string
	resumed                           int
	source                            gateway.Source
	principal                         gateway.Principal // Roles cloned

	gateway, session, src, principalT, protocolT *ast.Term

	// The last target seen: nearly every call goes to the session's own.
	target  gateway.Target
	targetT *ast.Term

	key    []byte // the session part of the decision cache key
	keyBuf []byte // the whole key of the current call
}

func (si *sessionInput) matches(gatewayID string, s *gateway.Session) bool {
	p := &s.Principal
	return si.gatewayID == gatewayID && si.id == s.ID && si.listener == s.Listener &&
		si.protocol == s.Protocol && si.started.Equal(s.Started) &&
		si.securityPolicy == s.SecurityPolicy && si.securityMode == s.SecurityMode &&
		si.resumed == s.Resumed && si.source == s.Source &&
		si.principal.User == p.User && si.principal.Auth == p.Auth &&
		si.principal.CertThumbprint == p.CertThumbprint && si.principal.ApplicationURI == p.ApplicationURI &&
		slices.Equal(si.principal.Roles, p.Roles)
}

func newSessionInput(gatewayID string, s *gateway.Session) *sessionInput {
	si := &sessionInput{
		gatewayID: gatewayID, id: s.ID, listener: s.Listener, protocol: s.Protocol,
		started: s.Started, securityPolicy: s.SecurityPolicy, securityMode: s.SecurityMode,
		resumed: s.Resumed, source: s.Source, principal: s.Principal,
	}
	si.principal.Roles = slices.Clone(s.Principal.Roles)

	gw := ast.NewObject([2]*ast.Term{kID, ast.StringTerm(gatewayID)})
	putString(gw, kListener, s.Listener)
	si.gateway = ast.NewTerm(gw)

	sess := ast.NewObject([2]*ast.Term{kID, ast.StringTerm(s.ID)})
	if !s.Started.IsZero() {
		sess.Insert(kStarted, timeTerm(s.Started))
	}
	putString(sess, kSecurityPolicy, s.SecurityPolicy)
	putString(sess, kSecurityMode, s.SecurityMode)
	if s.Resumed > 0 {
		sess.Insert(kResumed, ast.InternedTerm(s.Resumed))
	}
	si.session = ast.NewTerm(sess)

	src := ast.NewObject()
	if s.Source.IP.IsValid() {
		src.Insert(kIP, ast.StringTerm(s.Source.IP.String()))
		src.Insert(kPort, ast.InternedTerm(int(s.Source.Port)))
	}
	putString(src, kName, s.Source.Name)
	putString(src, kOwner, s.Source.Owner)
	si.src = ast.NewTerm(src)

	p := s.Principal
	auth := p.Auth
	if auth == "" {
		auth = gateway.AuthNone
	}
	roles := make([]*ast.Term, len(p.Roles))
	for i, r := range p.Roles {
		roles[i] = ast.InternedTerm(r)
	}
	prin := ast.NewObject(
		[2]*ast.Term{kAuth, ast.InternedTerm(auth)},
		[2]*ast.Term{kRoles, ast.ArrayTerm(roles...)},
	)
	putString(prin, kUser, p.User)
	putString(prin, kCertThumbprint, p.CertThumbprint)
	putString(prin, kApplicationURI, p.ApplicationURI)
	si.principalT = ast.NewTerm(prin)

	si.protocolT = ast.InternedTerm(s.Protocol)
	si.key = appendSessionKey(nil, gatewayID, s)
	return si
}

// input assembles the whole input for c with the tickets open at its time.
// lenient turns an unconvertible field into null instead of failing.
func (si *sessionInput) input(c *gateway.Call, tickets *ast.Term, lenient bool) (ast.Value, error) {
	op, err := operationTerm(&c.Operation, lenient)
	if err != nil {
		return nil, err
	}
	if si.targetT == nil || si.target != c.Target {
		si.target, si.targetT = c.Target, targetTerm(c.Target)
	}
	return ast.NewObject(
		[2]*ast.Term{kTime, timeTerm(c.Time)},
		[2]*ast.Term{kGateway, si.gateway},
		[2]*ast.Term{kSession, si.session},
		[2]*ast.Term{kSource, si.src},
		[2]*ast.Term{kPrincipal, si.principalT},
		[2]*ast.Term{kTarget, si.targetT},
		[2]*ast.Term{kProtocol, si.protocolT},
		[2]*ast.Term{kOperation, op},
		[2]*ast.Term{kTickets, tickets},
	), nil
}

func targetTerm(t gateway.Target) *ast.Term {
	obj := ast.NewObject(
		[2]*ast.Term{kName, ast.StringTerm(t.Name)},
		[2]*ast.Term{kUpstream, ast.StringTerm(t.Upstream)},
	)
	if t.UnitID >= 0 {
		obj.Insert(kUnitID, ast.InternedTerm(t.UnitID))
	}
	return ast.NewTerm(obj)
}

// operationTerm holds function, access and every field under its own key;
// function and access are inserted last so an engine field cannot shadow them.
func operationTerm(op *gateway.Operation, lenient bool) (*ast.Term, error) {
	obj := ast.NewObjectWithCapacity(len(op.Fields) + 2)
	for i := range op.Fields {
		f := &op.Fields[i]
		v, err := fieldTerm(f)
		if err != nil {
			if !lenient {
				return nil, err
			}
			v = ast.NullTerm()
		}
		obj.Insert(stringTerm(f.Key), v)
	}
	obj.Insert(kFunction, stringTerm(op.Function))
	obj.Insert(kAccess, stringTerm(string(op.Access)))
	return ast.NewTerm(obj), nil
}

func fieldTerm(f *gateway.Field) (*ast.Term, error) {
	switch f.Kind {
	case gateway.KindInt:
		return ast.InternedTerm(f.Int), nil
	case gateway.KindString:
		return ast.StringTerm(f.Str), nil
	case gateway.KindBool:
		return ast.InternedTerm(f.Bool), nil
	case gateway.KindInts:
		ts := make([]*ast.Term, len(f.Ints))
		for i, n := range f.Ints {
			ts[i] = ast.InternedTerm(n)
		}
		return ast.ArrayTerm(ts...), nil
	case gateway.KindStrings:
		ts := make([]*ast.Term, len(f.Strs))
		for i, s := range f.Strs {
			ts[i] = ast.StringTerm(s)
		}
		return ast.ArrayTerm(ts...), nil
	case gateway.KindAny:
		v, err := ast.InterfaceToValue(f.Any)
		if err != nil {
			return nil, fmt.Errorf("operation field %q: %w", f.Key, err)
		}
		return ast.NewTerm(v), nil
	}
	return nil, fmt.Errorf("operation field %q has unknown kind %d", f.Key, f.Kind)
}

func timeTerm(t time.Time) *ast.Term {
	return ast.StringTerm(t.UTC().Format(time.RFC3339Nano))
}

func putString(obj ast.Object, k *ast.Term, v string) {
	if v != "" {
		obj.Insert(k, ast.StringTerm(v))
	}
}
