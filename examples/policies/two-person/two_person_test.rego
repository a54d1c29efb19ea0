package interlock.two_person_test

import data.interlock

# --- fixtures ----------------------------------------------------------------

alice := {"user": "alice", "auth": "inventory", "roles": ["engineer"]}

bob := {"user": "bob", "auth": "inventory", "roles": ["engineer"]}

download := {"function": "unknown", "code": 90, "access": "program", "data": "0028"}

call(principal, target, op, tickets) := {
	"protocol": "modbus",
	"principal": principal,
	"source": {"ip": "10.0.5.7", "port": 50123, "name": "ews-alice"},
	"target": {"name": target, "upstream": "tcp://10.0.0.20:502", "unit_id": 1},
	"operation": op,
	"tickets": tickets,
}

program(principal, tickets) := call(principal, "plc1", download, tickets)

ticket(id, opened_by, approvals) := {
	"id": id,
	"user": "alice",
	"targets": ["plc1"],
	"access": ["program"],
	"reason": "CHG-2001 firmware 4.2",
	"opened_by": opened_by,
	"opened": "2026-11-26T10:30:00Z",
	"expires": "2026-11-26T12:30:00Z",
	"approvals": approvals,
}

cfg := {"access": ["program"]}

decide(c) := d if {
	d := interlock.decision with input as c with data.two_person as cfg
}

# --- approved, unapproved, self-approved -------------------------------------------------

test_approved_ticket_allows_and_is_named if {
	d := decide(program(alice, [ticket("T-1", "alice", ["bob"])]))
	d.allow
	not d.alert
	d.ticket == "T-1"
	d.reasons == ["two-person:pass:T-1:approved_by=bob"]
}

test_unapproved_ticket_denied if {
	d := decide(program(alice, [ticket("T-1", "alice", [])]))
	not d.allow
	d.alert
	not d.ticket
	d.reasons == ["two-person:enforced:ticket_not_approved:T-1"]
}

test_ticket_without_approvals_field_denied if {
	t := object.remove(ticket("T-1", "alice", []), ["approvals"])
	d := decide(program(alice, [t]))
	d.reasons == ["two-person:enforced:ticket_not_approved:T-1"]
}

test_self_approved_ticket_denied if {
	d := decide(program(alice, [ticket("T-1", "alice", ["alice"])]))
	not d.allow
	d.reasons == ["two-person:enforced:ticket_self_approved:T-1"]
}

test_ticket_listing_its_opener_among_approvals_never_counts if {
	d := decide(program(alice, [ticket("T-1", "alice", ["bob", "alice"])]))
	not d.allow
	d.reasons == ["two-person:enforced:ticket_self_approved:T-1"]
}

test_several_approvers_are_named if {
	d := decide(program(alice, [ticket("T-1", "alice", ["erin", "bob"])]))
	d.reasons == ["two-person:pass:T-1:approved_by=bob,erin"]
}

test_approval_by_the_user_when_someone_else_opened if {
	t := ticket("T-1", "root", ["alice"]) # root opened it for alice, alice approved
	decide(program(alice, [t])).allow
	d := interlock.decision with input as program(alice, [t])
		with data.two_person as {"access": ["program"], "approver_other_than_user": true}
	not d.allow
	d.reasons == ["two-person:enforced:ticket_approved_only_by_its_user:T-1"]
	ok := interlock.decision with input as program(alice, [ticket("T-2", "root", ["alice", "bob"])])
		with data.two_person as {"access": ["program"], "approver_other_than_user": true}
	ok.allow
	ok.reasons == ["two-person:pass:T-2:approved_by=bob"]
}

# --- tickets that do not match ---------------------------------------------------------

test_no_ticket_denied if {
	d := decide(program(alice, []))
	not d.allow
	d.reasons == ["two-person:enforced:no_ticket:alice:plc1:program"]
}

test_approved_ticket_of_another_user_does_not_allow if {
	d := decide(program(bob, [ticket("T-1", "alice", ["carol"])]))
	not d.allow
	d.reasons == ["two-person:enforced:no_ticket:bob:plc1:program"]
}

test_approved_ticket_for_another_target_or_access_does_not_allow if {
	d := decide(call(alice, "plc2", download, [ticket("T-1", "alice", ["bob"])]))
	d.reasons == ["two-person:enforced:no_ticket:alice:plc2:program"]
	writes := object.union(ticket("T-2", "alice", ["bob"]), {"access": ["write"]})
	d2 := decide(program(alice, [writes]))
	d2.reasons == ["two-person:enforced:no_ticket:alice:plc1:program"]
}

test_one_approved_ticket_among_unapproved_ones if {
	tickets := [ticket("T-1", "alice", []), ticket("T-2", "alice", ["bob"]), ticket("T-3", "alice", ["alice"])]
	d := decide(program(alice, tickets))
	d.allow
	d.ticket == "T-2"
	d.reasons == ["two-person:pass:T-2:approved_by=bob"]
}

test_every_unusable_ticket_is_reported if {
	d := decide(program(alice, [ticket("T-1", "alice", []), ticket("T-3", "alice", ["alice"])]))
	d.reasons == ["two-person:enforced:ticket_not_approved:T-1", "two-person:enforced:ticket_self_approved:T-3"]
}

# --- which access kinds ------------------------------------------------------------------

test_execute_optional if {
	method := {"function": "call", "access": "execute", "object_id": "o", "method_id": "m", "arguments": []}
	decide(call(alice, "plc1", method, [])).allow
	both := {"access": ["program", "execute"]}
	not interlock.decision.allow with input as call(alice, "plc1", method, []) with data.two_person as both
	t := object.union(ticket("T-1", "alice", ["bob"]), {"access": ["execute"]})
	d := interlock.decision with input as call(alice, "plc1", method, [t]) with data.two_person as both
	d.allow
	d.ticket == "T-1"
}

test_other_access_passes if {
	w := {"function": "write_single_register", "code": 6, "access": "write", "address": 1, "values": [1]}
	d := decide(call(alice, "plc1", w, []))
	d.allow
	d.reasons == []
	not d.ticket
}

test_without_data_program_needs_two_persons if {
	not interlock.decision.allow with input as program(alice, [ticket("T-1", "alice", [])]) with data.two_person as {}
	interlock.decision.allow with input as program(alice, [ticket("T-1", "alice", ["bob"])]) with data.two_person as {}
}

# --- staging ----------------------------------------------------------------------------

test_staged_two_person_rule_alerts_without_blocking if {
	d := decide(program(alice, [ticket("T-1", "alice", [])])) with data.staging as ["two-person"]
	d.allow
	d.alert
	not d.ticket
	d.reasons == ["two-person:monitor:ticket_not_approved:T-1"]
}

# --- the shipped data.json -------------------------------------------------------------

test_shipped_data if {
	interlock.decision.allow with input as program(alice, [ticket("T-1", "alice", ["bob"])])
	not interlock.decision.allow with input as program(alice, [ticket("T-1", "root", ["alice"])])
	not interlock.decision.allow with input as program(alice, [ticket("T-1", "alice", [])])
}

# governed is read from data as data gives it (two_person.rego): an empty
# list governs nothing, a missing or false one means program, and a set or
# an object's values work as a list does.
test_governed_access_forms if {
	c := program(alice, [])
	interlock.decision.allow with input as c with data.two_person as {"access": []}
	not interlock.decision.allow with input as c with data.two_person as {"access": false}
	not interlock.decision.allow with input as c with data.two_person as {}
	not interlock.decision.allow with input as c with data.two_person as {"access": {"program"}}
	not interlock.decision.allow with input as c with data.two_person as {"access": {"a": "program"}}
	interlock.decision.allow with input as c with data.two_person as {"access": ["execute"]}
}
