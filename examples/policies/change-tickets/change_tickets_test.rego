package interlock.change_tickets_test

import data.interlock

# --- fixtures ----------------------------------------------------------------

alice := {"user": "alice", "auth": "inventory", "roles": ["engineer"]}

bob := {"user": "bob", "auth": "inventory", "roles": ["engineer"]}

nobody := {"auth": "none", "roles": []}

call(principal, target, access, tickets) := {
	"protocol": "modbus",
	"principal": principal,
	"source": {"ip": "10.0.5.7", "port": 50123, "name": "ews-alice"},
	"target": {"name": target, "upstream": "tcp://10.0.0.20:502", "unit_id": 1},
	"operation": {"function": "write_multiple_registers", "access": access, "code": 16, "address": 100, "quantity": 1, "values": [7]},
	"tickets": tickets,
}

ticket(id, user, targets, access) := {
	"id": id,
	"user": user,
	"targets": targets,
	"access": access,
	"reason": "CHG-1234",
	"opened_by": "root",
	"opened": "2026-11-26T10:30:00Z",
	"expires": "2026-11-26T12:30:00Z",
	"approvals": [],
}

t1 := ticket("T-1", "alice", ["plc1"], ["write"])

# --- the ticket that matches ----------------------------------------------------

test_write_under_matching_ticket_allowed_and_named if {
	d := interlock.decision with input as call(alice, "plc1", "write", [t1])
	d.allow
	not d.alert
	d.ticket == "T-1"
	d.reasons == ["change-ticket:pass:T-1"]
}

test_no_ticket_denied if {
	d := interlock.decision with input as call(alice, "plc1", "write", [])
	not d.allow
	d.alert
	not d.ticket
	d.reasons == ["change-ticket:enforced:no_matching_ticket:alice:plc1:write"]
}

test_input_without_tickets_denied if {
	c := object.remove(call(alice, "plc1", "write", []), ["tickets"])
	not interlock.decision.allow with input as c
}

test_another_users_ticket_does_not_allow if {
	d := interlock.decision with input as call(bob, "plc1", "write", [t1])
	not d.allow
	not d.ticket
	d.reasons == ["change-ticket:enforced:no_matching_ticket:bob:plc1:write"]
}

test_ticket_for_another_target_does_not_allow if {
	d := interlock.decision with input as call(alice, "plc2", "write", [t1])
	not d.allow
	not d.ticket
	d.reasons == ["change-ticket:enforced:no_matching_ticket:alice:plc2:write"]
}

test_ticket_for_another_access_kind_does_not_allow if {
	every a in ["program", "execute"] {
		d := interlock.decision with input as call(alice, "plc1", a, [t1])
		not d.allow
		not d.ticket
	}
}

test_ticket_with_several_targets_and_access_kinds if {
	t := ticket("T-7", "alice", ["plc1", "plc2"], ["write", "program"])
	every target in ["plc1", "plc2"] {
		every a in ["write", "program"] {
			d := interlock.decision with input as call(alice, target, a, [t])
			d.allow
			d.ticket == "T-7"
		}
	}
	not interlock.decision.allow with input as call(alice, "plc3", "write", [t])
	not interlock.decision.allow with input as call(alice, "plc1", "execute", [t])
}

test_the_matching_ticket_is_named_among_others if {
	tickets := [
		ticket("T-0", "bob", ["plc1"], ["write"]),
		ticket("T-2", "alice", ["plc2"], ["write"]),
		ticket("T-3", "alice", ["plc1"], ["write"]),
	]
	d := interlock.decision with input as call(alice, "plc1", "write", tickets)
	d.allow
	d.ticket == "T-3"
}

test_several_matching_tickets_name_the_smallest_id if {
	tickets := [ticket("T-9", "alice", ["plc1"], ["write"]), t1]
	d := interlock.decision with input as call(alice, "plc1", "write", tickets)
	d.ticket == "T-1"
	d.reasons == ["change-ticket:pass:T-1"]
}

test_caller_without_user_never_matches if {
	t := ticket("T-5", "", ["plc1"], ["write"])
	not interlock.decision.allow with input as call(nobody, "plc1", "write", [t])
}

# --- calls that need no ticket ----------------------------------------------------

test_reads_and_sessions_need_no_ticket if {
	every a in ["read", "session", "browse", "subscribe", "diagnostic"] {
		d := interlock.decision with input as call(bob, "plc1", a, [])
		d.allow
		not d.alert
		not d.ticket
		d.reasons == []
	}
}

test_a_ticket_does_not_tag_calls_it_is_not_needed_for if {
	t := ticket("T-4", "alice", ["plc1"], ["read", "write"])
	d := interlock.decision with input as call(alice, "plc1", "read", [t])
	d.allow
	not d.ticket
}

test_governed_access_is_configurable if {
	c := call(alice, "plc1", "diagnostic", [])
	not interlock.decision.allow with input as c with data.change_tickets.governed_access as ["write", "diagnostic"]
	t := ticket("T-6", "alice", ["plc1"], ["diagnostic"])
	d := interlock.decision with input as call(alice, "plc1", "diagnostic", [t])
		with data.change_tickets.governed_access as ["write", "diagnostic"]
	d.allow
	d.ticket == "T-6"
}

test_without_data_writes_execute_and_program_need_a_ticket if {
	every a in ["write", "execute", "program"] {
		not interlock.decision.allow with input as call(alice, "plc1", a, []) with data.change_tickets as {}
	}
}

# --- staging ----------------------------------------------------------------------

test_staged_ticket_rule_alerts_without_blocking if {
	d := interlock.decision with input as call(alice, "plc1", "write", []) with data.staging as ["change-ticket"]
	d.allow
	d.alert
	not d.ticket
	d.reasons == ["change-ticket:monitor:no_matching_ticket:alice:plc1:write"]
}

# governed is read from data as data gives it (change_tickets.rego): an empty
# list governs nothing, a missing or false one means the default, and a set
# or an object's values work as a list does.
test_governed_access_forms if {
	c := call(alice, "plc1", "write", [])
	interlock.decision.allow with input as c with data.change_tickets as {"governed_access": []}
	not interlock.decision.allow with input as c with data.change_tickets as {"governed_access": false}
	not interlock.decision.allow with input as c with data.change_tickets as {}
	not interlock.decision.allow with input as c with data.change_tickets as {"governed_access": {"write"}}
	not interlock.decision.allow with input as c with data.change_tickets as {"governed_access": {"a": "write"}}
	interlock.decision.allow with input as call(alice, "plc1", "program", []) with data.change_tickets as {"governed_access": ["write"]}
}
