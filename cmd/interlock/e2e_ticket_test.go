package main

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"
)

// A change ticket opened through the admin socket of a running gateway
// allows a write within a second; the audit record names it; closing it, or
// its expiry, denies the next write at once.
func TestE2ETicketsOnARunningGateway(t *testing.T) {
	requirePeer(t, peerMbpoll, peerPymodbus)
	plc := startPLC(t, 0, "100=1500")
	g := newGateway(t, gwOptions{upstreamPort: plc.port, admin: true})
	g.start(t)

	write := func(v int) mbpollResult {
		return mbpoll(t, g.port, []string{"-r", "100"}, strconv.Itoa(v))
	}
	if r := write(1601); r.code == 0 || !strings.Contains(r.out, "Illegal function") {
		t.Fatalf("a write without window or ticket: exit %d, want it denied with Illegal function\n%s", r.code, r.out)
	}

	// A ticket for a target the gateway does not serve is refused.
	if r := interlock(t, "ticket", "open", "--config", g.config, "--user", "alice", "--target", "plc9",
		"--access", "write", "--for", "1h", "--reason", "CHG-1234"); r.code != 1 || !strings.Contains(r.stderr, `target "plc9" is not served by this gateway (its targets: plc1)`) {
		t.Errorf("ticket open for plc9: exit %d, want 1 naming the target\nstderr: %s", r.code, r.stderr)
	}
	open := interlock(t, "ticket", "open", "--config", g.config, "--user", "alice", "--target", "plc1",
		"--access", "write", "--for", "1h", "--reason", "CHG-1234", "--json")
	if open.code != 0 {
		t.Fatalf("ticket open: exit %d: %s", open.code, open.stderr)
	}
	var tk struct {
		ID, User, Reason string
		OpenedBy         string `json:"opened_by"`
	}
	if err := json.Unmarshal([]byte(open.stdout), &tk); err != nil || tk.ID == "" || tk.OpenedBy == "" {
		t.Fatalf("ticket open printed %q: %v", open.stdout, err)
	}
	opened := time.Now()
	if r := write(1602); r.code != 0 {
		t.Fatalf("a write under the ticket failed:\n%s", r.out)
	}
	// The ticket took effect at once (the first write after the open is
	// allowed); this bounds the whole mbpoll round trip, a durable write's
	// fsync included, with room for a loaded CI machine.
	if d := time.Since(opened); d > 3*time.Second {
		t.Errorf("the write under the ticket took %v; want well under 3s", d)
	}
	if v := plcRegisters(t, plc.port, 100, 1); v[0] != 1602 {
		t.Fatalf("PLC register 100 = %d, want 1602", v[0])
	}
	recs := waitAudit(t, g.auditPath, 3*time.Second, "the allowed write's call record", func(recs []record) bool {
		for _, c := range callRecords(recs, "write_single_register", 100) {
			if c.get("decision.allow") == true {
				return true
			}
		}
		return false
	})
	var allowed record
	for _, c := range callRecords(recs, "write_single_register", 100) {
		if c.get("decision.allow") == true {
			allowed = c
		}
	}
	if allowed.str("decision.ticket") != tk.ID || !strings.Contains(strings.Join(allowed.strs("decision.reasons"), ","), "ticket:"+tk.ID) {
		t.Fatalf("the allowed write's decision does not name the ticket %s: %v", tk.ID, allowed.get("decision"))
	}
	opens := eventsOf(recs, "ticket.open")
	if len(opens) != 1 || opens[0].str("ticket.id") != tk.ID || opens[0].str("ticket.reason") != "CHG-1234" ||
		opens[0].str("by") != tk.OpenedBy {
		t.Fatalf("ticket.open records: %v", opens)
	}

	// The opener cannot approve their own ticket.
	if r := interlock(t, "ticket", "approve", "--config", g.config, tk.ID); r.code == 0 || !strings.Contains(r.stderr, "cannot also approve") {
		t.Fatalf("self-approval: exit %d: %s", r.code, r.stderr)
	}
	if r := interlock(t, "ticket", "list", "--config", g.config); r.code != 0 || !strings.Contains(r.stdout, tk.ID) {
		t.Fatalf("ticket list: exit %d: %s %s", r.code, r.stdout, r.stderr)
	}

	if r := interlock(t, "ticket", "close", "--config", g.config, tk.ID); r.code != 0 {
		t.Fatalf("ticket close: exit %d: %s", r.code, r.stderr)
	}
	if r := write(1603); r.code == 0 || !strings.Contains(r.out, "Illegal function") {
		t.Fatalf("a write after the ticket closed: exit %d, want it denied with Illegal function\n%s", r.code, r.out)
	}
	if v := plcRegisters(t, plc.port, 100, 1); v[0] != 1602 {
		t.Fatalf("PLC register 100 = %d after the close, want 1602", v[0])
	}

	// Expiry: a 4-second ticket stops allowing at once when it ends, though
	// the decision cache would keep an allow for a second.
	short := interlock(t, "ticket", "open", "--config", g.config, "--user", "alice", "--target", "plc1",
		"--access", "write", "--for", "4s", "--reason", "CHG-1235", "--id", "CHG-1235")
	if short.code != 0 {
		t.Fatalf("ticket open: exit %d: %s", short.code, short.stderr)
	}
	start := time.Now()
	if r := write(1604); r.code != 0 {
		t.Fatalf("a write under the short ticket failed:\n%s", r.out)
	}
	time.Sleep(4*time.Second - time.Since(start) + 100*time.Millisecond)
	if r := write(1605); r.code == 0 || !strings.Contains(r.out, "Illegal function") {
		t.Fatalf("a write after the ticket expired: exit %d, want it denied with Illegal function\n%s", r.code, r.out)
	}
	if v := plcRegisters(t, plc.port, 100, 1); v[0] != 1604 {
		t.Fatalf("PLC register 100 = %d after the expiry, want 1604", v[0])
	}
	if code := g.stopGateway(t); code != 0 {
		t.Fatalf("gateway exit %d", code)
	}
	verifyAudit(t, g.auditPath)
	recs = readAudit(t, g.auditPath)
	closes := eventsOf(recs, "ticket.close")
	if len(closes) != 1 || closes[0].str("ticket_id") != tk.ID {
		t.Fatalf("ticket.close records: %v", closes)
	}
	// the refused requests are evidence too: the ticket for plc9 and the
	// self-approval
	refused := eventsOf(recs, "ticket.refused")
	if len(refused) != 2 ||
		refused[0].str("action") != "open" || refused[0].str("ticket.user") != "alice" ||
		!strings.Contains(refused[0].str("reason"), `target "plc9" is not served`) || refused[0].str("by") != tk.OpenedBy ||
		refused[1].str("action") != "approve" || refused[1].str("ticket_id") != tk.ID ||
		!strings.Contains(refused[1].str("reason"), "cannot also approve") {
		t.Errorf("ticket.refused records: %v", refused)
	}
}
