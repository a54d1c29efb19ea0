package opcua

import (
	"testing"

	"github.com/interlock-ics/interlock/gateway"
)

// Who may take a subscription over (OPC UA Part 4 §5.13.7): the same user;
// for anonymous sessions the same ApplicationURI on secured channels only.
func TestSameUser(t *testing.T) {
	sess := func(auth, user, appURI, mode string) *gateway.Session {
		return &gateway.Session{SecurityMode: mode, Principal: gateway.Principal{Auth: auth, User: user, ApplicationURI: appURI}}
	}
	alice := sess(gateway.AuthUsername, "alice", "urn:a", "None")
	for _, tc := range []struct {
		name string
		a, b *gateway.Session
		want bool
	}{
		{"same user, other application", alice, sess(gateway.AuthUsername, "alice", "urn:b", "SignAndEncrypt"), true},
		{"other user", alice, sess(gateway.AuthUsername, "bob", "urn:a", "None"), false},
		{"same name, other login kind", alice, sess(gateway.AuthX509, "alice", "urn:a", "None"), false},
		{"x509 same subject", sess(gateway.AuthX509, "cn", "urn:a", "Sign"), sess(gateway.AuthX509, "cn", "urn:b", "Sign"), true},
		{"empty user names", sess(gateway.AuthUsername, "", "urn:a", "Sign"), sess(gateway.AuthUsername, "", "urn:a", "Sign"), false},
		{"anonymous, same application, secured", sess(gateway.AuthAnonymous, "", "urn:a", "Sign"), sess(gateway.AuthAnonymous, "", "urn:a", "SignAndEncrypt"), true},
		{"anonymous, other application", sess(gateway.AuthAnonymous, "", "urn:a", "Sign"), sess(gateway.AuthAnonymous, "", "urn:b", "Sign"), false},
		{"anonymous, old session on None", sess(gateway.AuthAnonymous, "", "urn:a", "None"), sess(gateway.AuthAnonymous, "", "urn:a", "Sign"), false},
		{"anonymous, new session on None", sess(gateway.AuthAnonymous, "", "urn:a", "Sign"), sess(gateway.AuthAnonymous, "", "urn:a", "None"), false},
		{"anonymous, no application URI", sess(gateway.AuthAnonymous, "", "", "Sign"), sess(gateway.AuthAnonymous, "", "", "Sign"), false},
		{"anonymous to a user", sess(gateway.AuthAnonymous, "", "urn:a", "Sign"), sess(gateway.AuthUsername, "alice", "urn:a", "Sign"), false},
		{"no session", nil, alice, false},
	} {
		if got := sameUser(tc.a, tc.b); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}
