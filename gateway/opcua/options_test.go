package opcua

import (
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/bcrypt"

	"github.com/interlock-ics/interlock/gateway"
	"github.com/interlock-ics/interlock/gateway/opcua/channel"
)

func TestOptionsErrorsNameTheKey(t *testing.T) {
	for _, tc := range []struct {
		o    Options
		want string
	}{
		{Options{Users: "passthrough"}, "pki:"},
		{Options{PKI: "p"}, "users:"},
		{Options{PKI: "p", Users: "passthrough", SecurityPolicies: []string{"Basic128Rsa15"}}, "security_policies[0]:"},
		{Options{PKI: "p", Users: "passthrough", SecurityModes: []string{"None"}}, "security_modes[0]:"},
		{Options{PKI: "p", Users: "passthrough", UpstreamSecurityPolicy: "Basic256"}, "upstream_security_policy:"},
		{Options{PKI: "p", Users: "passthrough", UpstreamSecurityPolicy: "None", UpstreamSecurityMode: "Sign"}, "upstream_security_mode:"},
		{Options{PKI: "p", Users: "passthrough", UpstreamIdentity: "anonymous"}, "upstream_identity:"},
		{Options{PKI: "p", Anonymous: true, UpstreamIdentity: "root"}, "upstream_identity:"},
		{Options{PKI: "p", Anonymous: true, UpstreamIdentity: "service"}, "upstream_user:"},
		{Options{PKI: "p", Anonymous: true, UpstreamIdentity: "service", UpstreamUser: "svc"}, "upstream_password_file:"},
		{Options{PKI: "p", Anonymous: true, Limits: LimitOptions{MaxSessions: -1}}, "limits.max_sessions:"},
		{Options{PKI: "p", Anonymous: true, Limits: LimitOptions{MaxSessionsPerSource: -1}}, "limits.max_sessions_per_source: -1 is negative"},
		{Options{PKI: "p", Anonymous: true, Limits: LimitOptions{MaxSessions: 5, MaxSessionsPerSource: 6}}, "limits.max_sessions_per_source: 6 is more than limits.max_sessions (5)"},
		{Options{PKI: "p", Anonymous: true, Limits: LimitOptions{MaxMonitoredItemsPerSession: -5}}, "limits.max_monitored_items_per_session: -5 is negative"},
		{Options{PKI: "p", Anonymous: true, Limits: LimitOptions{SessionTimeout: 1}}, "limits.session_timeout:"},
		{Options{PKI: "p", Anonymous: true, Limits: LimitOptions{MaxDecodedSize: 65536}}, "limits.max_decoded_size: 65536 is below"},
		{Options{PKI: "p", Anonymous: true, Limits: LimitOptions{MaxMessageSize: 100}}, "limits.max_message_size:"},
		{Options{PKI: "p", Anonymous: true, Limits: LimitOptions{MaxPartialBytes: 1 << 20}}, "limits.max_partial_bytes: 1048576 is below max_message_size (16777216)"},
		{Options{PKI: "p", Anonymous: true, UpstreamTokenLifetime: 10 * time.Millisecond}, "upstream_token_lifetime:"},
	} {
		err := tc.o.checkAndSetDefaults("")
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want an error starting %q", tc.o, err, tc.want)
		}
	}
	o := Options{PKI: "pki", Users: "users.yaml", SecurityPolicies: []string{"None", "Basic256Sha256"}}
	if err := o.checkAndSetDefaults("/etc/interlock"); err != nil {
		t.Fatal(err)
	}
	if o.PKI != "/etc/interlock/pki" || o.Users != "/etc/interlock/users.yaml" || len(o.offers) != 3 ||
		o.UpstreamIdentity != IdentityAnonymous || o.Limits.MaxSessions != DefaultMaxSessions ||
		o.UpstreamTokenLifetime != DefaultUpstreamTokenLifetime || o.Limits.MaxDecodedSize != channel.DefaultMaxDecodedSize ||
		o.Limits.MaxPartialBytes != 4*DefaultMaxMessageSize || o.Limits.MaxSessionsPerSource != 16 {
		t.Errorf("defaults: %+v", o)
	}
	pw := filepath.Join(t.TempDir(), "pw")
	os.WriteFile(pw, []byte("s3cret\n"), 0o600)
	o = Options{PKI: "p", Anonymous: true, UpstreamIdentity: "service", UpstreamUser: "svc", UpstreamPasswordFile: pw}
	if err := o.checkAndSetDefaults(""); err != nil || o.upstreamPwd != "s3cret" {
		t.Errorf("service identity: %v %q", err, o.upstreamPwd)
	}
}

func TestUsersFile(t *testing.T) {
	bc, _ := bcrypt.GenerateFromPassword([]byte("pw-a"), bcrypt.MinCost)
	salt := []byte("saltsaltsaltsalt")
	key := argon2.IDKey([]byte("pw-b"), salt, 1, 1024, 1, 32)
	a2 := fmt.Sprintf("$argon2id$v=19$m=1024,t=1,p=1$%s$%s", base64.RawStdEncoding.EncodeToString(salt), base64.RawStdEncoding.EncodeToString(key))
	dir := t.TempDir()
	write := func(body string) string {
		p := filepath.Join(dir, fmt.Sprintf("u%d.yaml", len(body)))
		os.WriteFile(p, []byte(body), 0o600)
		return p
	}
	u, err := LoadUsers(write(fmt.Sprintf("- name: a\n  password_hash: %q\n  roles: [engineer]\n- name: b\n  password_hash: %q\n", bc, a2)))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		user, pw string
		ok       bool
	}{{"a", "pw-a", true}, {"a", "pw-b", false}, {"b", "pw-b", true}, {"b", "pw-a", false}, {"c", "pw-a", false}} {
		if _, ok := u.Check(tc.user, tc.pw); ok != tc.ok {
			t.Errorf("Check(%s, %s) = %v", tc.user, tc.pw, ok)
		}
	}
	for body, want := range map[string]string{
		"- name: a\n  password_hash: plain\n":                          ":2: [0].password_hash (user \"a\"): not a bcrypt",
		"- name: a\n  password_hash: \"$argon2id$v=19$m=1,t=1$x$y\"\n": ":2: [0].password_hash (user \"a\"): argon2id",
		"- password_hash: x\n":                                         ":1: [0].name: missing",
		"- name: a\n  password: x\n":                                   ":2: [0].password: unknown key (want name, password_hash, roles)",
		"- name: a\n  password_hash: [\n":                              "yaml: line 2",
		"# nobody yet\n":                                               "empty",
		fmt.Sprintf("- name: a\n  password_hash: %q\n- name: a\n  password_hash: %q\n", bc, bc): ":3: [1].name: \"a\" is listed twice",
	} {
		p := write(body)
		if _, err := LoadUsers(p); err == nil || !strings.Contains(err.Error(), want) || !strings.HasPrefix(err.Error(), p+":") {
			t.Errorf("%q: %v, want %q after the file name", body, err, want)
		}
	}

	// What a reload tells: added, removed, and changed (hash or roles).
	v, err := LoadUsers(write(fmt.Sprintf("- name: b\n  password_hash: %q\n  roles: [operator]\n- name: c\n  password_hash: %q\n- name: d\n  password_hash: %q\n", a2, bc, bc)))
	if err != nil {
		t.Fatal(err)
	}
	added, removed, changed := u.Diff(v)
	if fmt.Sprint(added, removed, changed) != "[c d] [a] [b]" {
		t.Errorf("Diff: added %v, removed %v, changed %v; want [c d] [a] [b]", added, removed, changed)
	}
	if added, _, _ := (*Users)(nil).Diff(v); len(added) != 3 || v.Len() != 3 || (*Users)(nil).Len() != 0 {
		t.Errorf("Diff from no users: added %v; Len %d", added, v.Len())
	}
}

func TestServiceFunction(t *testing.T) {
	for in, want := range map[string]string{"Read": "read", "CreateMonitoredItems": "create_monitored_items", "TranslateBrowsePathsToNodeIDs": "translate_browse_paths_to_node_ids"} {
		if got := ServiceFunction(in); got != want {
			t.Errorf("%s: %s", in, got)
		}
	}
}

// TestUpstreamURLRefused: an upstream that is not an opc.tcp URL with a
// host is refused before anything else of the listener is opened.
func TestUpstreamURLRefused(t *testing.T) {
	for _, raw := range []string{"10.0.0.20:4840", "opc.tcp://:4840", "opc.tcp://", "http://10.0.0.20:4840", "opc.tcp://[::1"} {
		_, err := New(gateway.EngineSpec{Listener: "line1", Upstream: raw, Listen: "127.0.0.1:0",
			Options: func(into any) error { *into.(*Options) = Options{PKI: "p", Anonymous: true}; return nil }})
		if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("upstream: %q is not an opc.tcp://host:port URL", raw)) {
			t.Errorf("upstream %q: %v", raw, err)
		}
	}
}
