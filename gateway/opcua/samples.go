package opcua

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/gopcua/opcua/ua"

	"github.com/interlock-ics/interlock/gateway"
)

// MaxSampleUsers bounds the users of a users file that get sample sessions:
// every sample call is decided for each of them.
const MaxSampleUsers = 20

// SampleSessions returns sessions of the listener spec describes, as the
// engine opens them, for `interlock check` (and the gateway, on a policy it
// loads) to decide sample calls in: one per user of the users file (the
// first MaxSampleUsers by name) with the file's roles; an anonymous one
// when anonymous login is on; and one of a user name the gateway does not
// know (a password passthrough or X.509 login). With users: passthrough
// (the server checks passwords, the gateway knows no list) the users are
// those of known (the user names the configuration gives elsewhere: the
// source inventory, open change tickets; the first MaxSampleUsers by
// name), without roles, as the gateway opens their sessions. Each has the
// most secure security mode the listener offers. Nothing is dialed.
func SampleSessions(spec gateway.EngineSpec, at time.Time, known []string) (map[string]*gateway.Session, error) {
	o, err := optionsOf(spec)
	if err != nil {
		return nil, err
	}
	var principals []gateway.Principal
	if o.Users != "" && o.Users != UsersPassthrough {
		users, err := LoadUsers(o.Users)
		if err != nil {
			return nil, fmt.Errorf("users: %w", err)
		}
		names := make([]string, 0, len(users.byName))
		for n := range users.byName {
			names = append(names, n)
		}
		slices.Sort(names)
		for _, n := range names[:min(len(names), MaxSampleUsers)] {
			principals = append(principals, gateway.Principal{User: n, Auth: gateway.AuthUsername,
				Roles: slices.Clone(users.byName[n].Roles)})
		}
	}
	if o.Users == UsersPassthrough {
		names := slices.Compact(slices.Sorted(slices.Values(known)))
		names = slices.DeleteFunc(names, func(n string) bool { return n == "" })
		for _, n := range names[:min(len(names), MaxSampleUsers)] {
			principals = append(principals, gateway.Principal{User: n, Auth: gateway.AuthUsername})
		}
	}
	if o.Anonymous {
		principals = append(principals, gateway.Principal{Auth: gateway.AuthAnonymous})
	}
	principals = append(principals, gateway.Principal{User: "sample-unknown-user", Auth: gateway.AuthUsername})

	best := offer{PolicyURI: ua.SecurityPolicyURINone, Mode: ua.MessageSecurityModeNone}
	for _, of := range o.offers {
		if of.Mode > best.Mode {
			best = of
		}
	}
	out := map[string]*gateway.Session{}
	for _, p := range principals {
		if best.Mode != ua.MessageSecurityModeNone {
			p.CertThumbprint = strings.Repeat("0", 40) // a secure channel has a client certificate
		}
		p.ApplicationURI = "urn:interlock:sample-client"
		who := "OPC UA user " + p.User
		switch {
		case p.Auth == gateway.AuthAnonymous:
			who = "OPC UA anonymous"
		case p.User == "sample-unknown-user":
			who = "OPC UA unknown user"
		}
		out[who+" to "+spec.Target.Name] = &gateway.Session{
			ID: "sample-opcua", Started: at, Listener: spec.Listener, Protocol: Protocol,
			Source:         gateway.Source{IP: netip.MustParseAddr("192.0.2.10"), Port: 50123},
			Principal:      p,
			Target:         spec.Target,
			SecurityPolicy: policyName(best.PolicyURI), SecurityMode: modeName(best.Mode),
		}
	}
	return out, nil
}

// SampleOperations are a Read and a Write of a setpoint's value, a Call of
// a method with an argument and a Browse, built from requests by the code
// that builds the engine's decision inputs.
func SampleOperations() []gateway.Operation {
	setpoint := ua.NewStringNodeID(1, "Setpoint")
	const path = "/Objects/PLC/Setpoint"
	calls := []*gateway.Call{
		readCall(nodeIDString(setpoint), path, &ua.ReadValueID{NodeID: setpoint, AttributeID: ua.AttributeIDValue}),
		writeCall(nodeIDString(setpoint), path, &ua.WriteValue{NodeID: setpoint, AttributeID: ua.AttributeIDValue,
			Value: &ua.DataValue{EncodingMask: ua.DataValueValue, Value: ua.MustVariant(float64(42.5))}}),
		methodCall(nodeIDString(ua.NewStringNodeID(1, "Start")), "/Objects/PLC/Start", &ua.CallMethodRequest{
			ObjectID: ua.NewStringNodeID(1, "PLC"), MethodID: ua.NewStringNodeID(1, "Start"),
			InputArguments: []*ua.Variant{ua.MustVariant(int32(100))}}),
		browseCall(&ua.BrowseDescription{NodeID: ua.NewNumericNodeID(0, 85)}), // Objects
	}
	ops := make([]gateway.Operation, len(calls))
	for i, c := range calls {
		ops[i] = c.Operation
	}
	return ops
}
