package opcua_test

import (
	"strings"
	"testing"
	"time"

	"github.com/interlock-ics/interlock/gateway/opcua"
	"github.com/interlock-ics/interlock/gateway/opcua/opcuatest"
)

// A node-opcua client whose TCP connection drops while it reads opens a
// new secure channel and activates its session on it (OPC 10000-4 §5.7.3):
// the session carries on with the same id, its session.open on the new
// channel is decided again and says resumed 1 with the new source port,
// and the reads go on; no second session, no session.close until the
// client closes it. At None (anonymous) and Basic256Sha256 SignAndEncrypt
// (a user from the users file, the same certificate on both channels).
func TestSessionMovesToANewSecureChannel(t *testing.T) {
	srv := opcuatest.StartServer(t, opcuatest.ServerOptions{})
	for _, tc := range []struct {
		name, policy, mode, user, password string
	}{
		{"None", "None", "None", "", ""},
		{"Basic256Sha256", "Basic256Sha256", "SignAndEncrypt", opcuatest.Engineer, opcuatest.EngineerPassword},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := opcua.Options{SecurityPolicies: []string{tc.policy}, Anonymous: true, Users: usersFile(t)}
			if tc.policy != "None" {
				o.SecurityModes = []string{tc.mode}
			}
			g := startGateway(t, gwOpts{upstream: srv.Endpoint, policy: allowAllPolicy, opts: o})
			r := newCutRelay(t, strings.TrimPrefix(g.endpoint, "opc.tcp://"))
			sc := opcuatest.Scenario{Endpoint: "opc.tcp://" + r.addr, SecurityPolicy: tc.policy, SecurityMode: tc.mode,
				User: tc.user, Password: tc.password, Reconnect: true}
			if tc.policy != "None" {
				trustedClient(t, g, &sc)
			}
			sc.Steps = []opcuatest.Step{{ReadLoop: &opcuatest.ReadLoop{Node: opcuatest.NodePressure, Seconds: 12}}}
			client := opcuatest.StartClient(t, sc)
			g.waitRecords(t, 30*time.Second, "three answered reads", func(rs []record) bool { return len(events(rs, "result")) >= 3 })
			r.cut()
			rs := g.waitRecords(t, 30*time.Second, "the session activated on a new channel", func(rs []record) bool {
				return len(events(rs, "session.open")) >= 2
			})
			before := len(events(rs, "result"))
			readsOn(t, client)
			rs = g.waitRecords(t, 15*time.Second, "session.close", func(rs []record) bool { return len(events(rs, "session.close")) > 0 })
			opens, closes := events(rs, "session.open"), events(rs, "session.close")
			if len(opens) != 2 {
				t.Fatalf("%d session.open records, want 2 (the session, then on the new channel): %v", len(opens), opens)
			}
			first, moved := opens[0], opens[1]
			if first.str("session_id") != moved.str("session_id") || first.str("session", "resumed") != "" || moved.str("session", "resumed") != "1" ||
				moved.str("success") != "true" || moved.str("principal", "user") != first.str("principal", "user") {
				t.Errorf("session.open records %v then %v: want one session, the second resumed 1 for the same user", first, moved)
			}
			if first.str("source", "port") == moved.str("source", "port") {
				t.Errorf("the session on the new channel names the old source port %s", moved.str("source", "port"))
			}
			if len(closes) != 1 || closes[0].str("session_id") != first.str("session_id") || closes[0].str("error") != "" {
				t.Errorf("session.close records %v, want the one session, closed by the client", closes)
			}
			if after := len(events(rs, "result")); after <= before {
				t.Errorf("%d result records after the move, %d before: no reads on the new channel", after, before)
			}
		})
	}
}

// After a network break the gateway has not noticed (its side of the old
// connection stays open, half-open), a node-opcua client at
// Basic256Sha256 SignAndEncrypt times out, opens a new secure channel
// with the same certificate and activates its session there: the session
// moves away from the channel still open (one session, resumed 1) and
// the reads go on. Without the move the client falls back to a new
// session.
func TestSessionMovesAwayFromAHalfOpenChannel(t *testing.T) {
	srv := opcuatest.StartServer(t, opcuatest.ServerOptions{})
	o := opcua.Options{SecurityPolicies: []string{"Basic256Sha256"}, SecurityModes: []string{"SignAndEncrypt"},
		Anonymous: true, Users: usersFile(t)}
	g := startGateway(t, gwOpts{upstream: srv.Endpoint, policy: allowAllPolicy, opts: o})
	r := newCutRelay(t, strings.TrimPrefix(g.endpoint, "opc.tcp://"))
	sc := opcuatest.Scenario{Endpoint: "opc.tcp://" + r.addr, SecurityPolicy: "Basic256Sha256", SecurityMode: "SignAndEncrypt",
		User: opcuatest.Engineer, Password: opcuatest.EngineerPassword, Reconnect: true, RequestTimeout: 3 * time.Second}
	trustedClient(t, g, &sc)
	sc.Steps = []opcuatest.Step{{ReadLoop: &opcuatest.ReadLoop{Node: opcuatest.NodePressure, Seconds: 15}}}
	client := opcuatest.StartClient(t, sc)
	g.waitRecords(t, 30*time.Second, "three answered reads", func(rs []record) bool { return len(events(rs, "result")) >= 3 })
	r.freeze()
	readsOn(t, client)
	rs := g.waitRecords(t, 15*time.Second, "session.close", func(rs []record) bool { return len(events(rs, "session.close")) > 0 })
	opens, closes := events(rs, "session.open"), events(rs, "session.close")
	if len(opens) != 2 || opens[0].str("session_id") != opens[1].str("session_id") || opens[1].str("session", "resumed") != "1" {
		var got []string
		for _, o := range opens {
			got = append(got, o.str("session_id")+" resumed "+o.str("session", "resumed"))
		}
		t.Fatalf("session.open records of %q, want one session, then the same resumed 1 (no second session)", got)
	}
	if len(closes) != 1 || closes[0].str("error") != "" {
		t.Errorf("session.close records %v, want the one session, closed by the client", closes)
	}
}

// A node-opcua subscription lives on when the client's connection drops:
// the client activates its session on a new channel and gets the data
// changes again from the same subscription (no second CreateSubscription,
// no second session).
func TestSubscriptionSurvivesAChannelMove(t *testing.T) {
	srv := opcuatest.StartServer(t, opcuatest.ServerOptions{})
	g := startGateway(t, gwOpts{upstream: srv.Endpoint, policy: allowAllPolicy, opts: opcua.Options{
		SecurityPolicies: []string{"None"}, Anonymous: true}})
	r := newCutRelay(t, strings.TrimPrefix(g.endpoint, "opc.tcp://"))
	const samples = 40
	client := opcuatest.StartClient(t, opcuatest.Scenario{Endpoint: "opc.tcp://" + r.addr, Reconnect: true,
		Steps: []opcuatest.Step{{Subscribe: &opcuatest.Subscribe{Node: opcuatest.NodeTemperature, Samples: samples,
			Interval: 200 * time.Millisecond, Timeout: 60 * time.Second}}}})
	publishes := func(rs []record) (n int) {
		for _, rec := range events(rs, "result") {
			if rec.str("function") == "publish" && rec.str("status") == "ok" {
				n++
			}
		}
		return n
	}
	g.waitRecords(t, 30*time.Second, "three answered Publishes", func(rs []record) bool { return publishes(rs) >= 3 })
	r.cut()
	res, err := client.Wait()
	if err != nil {
		t.Fatal(err)
	}
	sub := step(t, res, 0, "subscribe")
	if len(sub.Samples) != samples {
		t.Fatalf("%d data changes, want %d: the subscription did not carry on", len(sub.Samples), samples)
	}
	rs := g.waitRecords(t, 15*time.Second, "session.close", func(rs []record) bool { return len(events(rs, "session.close")) > 0 })
	creates := 0
	for _, rec := range events(rs, "call") {
		if rec.str("operation", "function") == "create_subscription" {
			creates++
		}
	}
	opens := events(rs, "session.open")
	if creates != 1 || len(opens) != 2 || opens[1].str("session", "resumed") != "1" || opens[0].str("session_id") != opens[1].str("session_id") {
		t.Errorf("%d create_subscription calls and session.open records %v; want one subscription in one session, resumed once", creates, opens)
	}
}

// readsOn waits for a client whose first step is a ReadLoop and checks
// that it read on after its last error.
func readsOn(t *testing.T, client *opcuatest.Client) {
	t.Helper()
	res, err := client.Wait()
	if err != nil {
		t.Fatal(err)
	}
	loop := step(t, res, 0, "readLoop")
	if loop.ReadsAfterLastError == 0 {
		t.Errorf("read loop: %d reads, %d errors, none after the last (%q): the client did not read on", loop.Reads, loop.Errors, loop.LastError)
	}
}
