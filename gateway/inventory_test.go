package gateway_test

import (
	"context"
	"net/netip"
	"testing"

	"github.com/interlock-ics/interlock/gateway"
)

func TestInventoryMostSpecificPrefixWins(t *testing.T) {
	inv := gateway.NewInventory([]gateway.Workstation{
		{Prefix: netip.MustParsePrefix("10.0.0.0/8"), Name: "plant", User: "shared", Roles: []string{"operator"}},
		{Prefix: netip.MustParsePrefix("10.0.5.7/32"), Name: "ews-alice", Owner: "alice", User: "alice", Roles: []string{"engineer"}},
		{Prefix: netip.MustParsePrefix("10.0.5.0/24"), Name: "eng-lab", User: "lab"},
	})
	for _, tc := range []struct{ ip, name, user, auth string }{
		{"10.0.5.7", "ews-alice", "alice", gateway.AuthInventory},
		{"10.0.5.8", "eng-lab", "lab", gateway.AuthInventory},
		{"10.1.2.3", "plant", "shared", gateway.AuthInventory},
		{"::ffff:10.0.5.7", "ews-alice", "alice", gateway.AuthInventory},
		{"192.168.1.1", "", "", gateway.AuthNone},
	} {
		s := &gateway.Session{Source: gateway.Source{IP: netip.MustParseAddr(tc.ip)}}
		inv.Identify(context.Background(), nil, s)
		if s.Source.Name != tc.name || s.Principal.User != tc.user || s.Principal.Auth != tc.auth {
			t.Errorf("%s: got name %q user %q auth %q; want %q %q %q", tc.ip,
				s.Source.Name, s.Principal.User, s.Principal.Auth, tc.name, tc.user, tc.auth)
		}
	}
}
