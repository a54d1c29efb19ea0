package interlock.staged_test

import data.interlock

# The staged policy combines two library modules (change-tickets and
# modbus-ranges: rules change-ticket, modbus-function, modbus-address,
# modbus-value) under the decision template, with data.staging listing the
# rules that only alert. These tests prove that a monitor-only rule alerts
# without blocking while an enforced one blocks, on the same calls.

# --- fixtures ----------------------------------------------------------------

alice := {"user": "alice", "auth": "inventory", "roles": ["engineer"]}

cfg := {"targets": {"plc1": {
	"functions": ["read_holding_registers", "write_single_register", "write_multiple_registers"],
	"holding_registers": [
		{"name": "process", "start": 0, "end": 99, "access": ["read"]},
		{"name": "temperature", "start": 100, "end": 109, "access": ["read", "write"], "min": 0, "max": 1200},
	],
}}}

t1 := {
	"id": "T-1", "user": "alice", "targets": ["plc1"], "access": ["write"], "reason": "CHG-1234",
	"opened_by": "root", "opened": "2026-11-26T10:30:00Z", "expires": "2026-11-26T12:30:00Z", "approvals": [],
}

call(op, tickets) := {
	"protocol": "modbus",
	"principal": alice,
	"source": {"ip": "10.0.5.7", "port": 50123, "name": "ews-alice"},
	"target": {"name": "plc1", "upstream": "tcp://10.0.0.20:502", "unit_id": 1},
	"operation": op,
	"tickets": tickets,
}

fc3(a, q) := {"function": "read_holding_registers", "code": 3, "access": "read", "address": a, "quantity": q}

fc6(a, v) := {"function": "write_single_register", "code": 6, "access": "write", "address": a, "values": [v]}

fc5(a, v) := {"function": "write_single_coil", "code": 5, "access": "write", "address": a, "values": [v]}

# decide with the test ranges, the given staging list, and no other data.
decide(c, staging) := d if {
	d := interlock.decision with input as c
		with data.modbus_ranges as cfg
		with data.change_tickets as {}
		with data.staging as staging
}

over_limit := "modbus-value:monitor:value_out_of_range:temperature:105=1500:limit=0..1200"

# --- a monitor-only rule alerts, an enforced rule blocks -----------------------------------

test_clean_write_under_ticket if {
	d := decide(call(fc6(105, 700), [t1]), ["modbus-value"])
	d.allow
	not d.alert
	d.ticket == "T-1"
	d.reasons == ["change-ticket:pass:T-1"]
}

test_monitor_only_rule_alerts_without_blocking if {
	d := decide(call(fc6(105, 1500), [t1]), ["modbus-value"])
	d.allow
	d.alert
	d.ticket == "T-1"
	d.reasons == ["change-ticket:pass:T-1", over_limit]
}

test_enforced_rule_blocks if {
	d := decide(call(fc6(105, 700), []), ["modbus-value"])
	not d.allow
	d.alert
	not d.ticket
	d.reasons == ["change-ticket:enforced:no_matching_ticket:alice:plc1:write"]
}

test_enforced_and_monitor_only_violations_in_one_decision if {
	d := decide(call(fc6(105, 1500), []), ["modbus-value"])
	not d.allow
	d.alert
	d.reasons == ["change-ticket:enforced:no_matching_ticket:alice:plc1:write", over_limit]
}

test_other_enforced_rules_still_block if {
	ro := decide(call(fc6(50, 1), [t1]), ["modbus-value"])
	not ro.allow
	ro.reasons == ["change-ticket:pass:T-1", "modbus-address:enforced:address_not_allowed:holding_registers:write:50..50"]
	fn := decide(call(fc5(1, 1), [t1]), ["modbus-value"])
	not fn.allow
	fn.reasons == ["change-ticket:pass:T-1", "modbus-function:enforced:function_not_allowed:write_single_coil:5"]
}

test_a_ticket_is_named_only_when_the_call_is_allowed if {
	d := decide(call(fc6(50, 1), [t1]), ["modbus-value"])
	not d.allow
	not d.ticket
}

# --- moving a rule between stages -----------------------------------------------------

test_promoting_the_rule_makes_it_block if {
	d := decide(call(fc6(105, 1500), [t1]), [])
	not d.allow
	d.reasons == ["change-ticket:pass:T-1", "modbus-value:enforced:value_out_of_range:temperature:105=1500:limit=0..1200"]
}

test_empty_staging_enforces_every_rule if {
	d := interlock.decision with input as call(fc6(105, 1500), [t1])
		with data.modbus_ranges as cfg
		with data.change_tickets as {}
		with data.staging as null
	not d.allow
	d2 := interlock.decision with input as call(fc6(105, 1500), [t1]) with data.modbus_ranges as cfg
		with data.staging as []
	not d2.allow
}

test_staging_another_rule if {
	d := decide(call(fc6(105, 700), []), ["change-ticket"])
	d.allow
	d.alert
	d.reasons == ["change-ticket:monitor:no_matching_ticket:alice:plc1:write"]
	over := decide(call(fc6(105, 1500), []), ["change-ticket"])
	not over.allow
	over.reasons == [
		"change-ticket:monitor:no_matching_ticket:alice:plc1:write",
		"modbus-value:enforced:value_out_of_range:temperature:105=1500:limit=0..1200",
	]
}

test_staging_every_rule_blocks_nothing_and_alerts_on_everything if {
	every_rule := ["change-ticket", "modbus-function", "modbus-address", "modbus-value"]
	d := decide(call(fc5(1, 1), []), every_rule)
	d.allow
	d.alert
	d.reasons == [
		"change-ticket:monitor:no_matching_ticket:alice:plc1:write",
		"modbus-function:monitor:function_not_allowed:write_single_coil:5",
	]
}

test_unknown_rule_id_in_staging_changes_nothing if {
	d := decide(call(fc6(105, 1500), [t1]), ["modbus-values"]) # a typo
	not d.allow
	d.reasons == ["change-ticket:pass:T-1", "modbus-value:enforced:value_out_of_range:temperature:105=1500:limit=0..1200"]
}

# --- calls no rule objects to ------------------------------------------------------------

test_read_needs_no_ticket_and_raises_nothing if {
	d := decide(call(fc3(0, 110), []), ["modbus-value"])
	d.allow
	not d.alert
	d.reasons == []
	not d.ticket
}

# --- the shipped data.json --------------------------------------------------------------

rule_ids := {"change-ticket", "modbus-function", "modbus-address", "modbus-value"}

test_shipped_staging_names_only_rules_of_this_policy if {
	every id in data.staging {
		id in rule_ids
	}
}

test_shipped_data if {
	ok := interlock.decision with input as call(fc6(105, 1500), [t1])
	ok.allow
	ok.alert
	ok.reasons == ["change-ticket:pass:T-1", "modbus-value:monitor:value_out_of_range:temperature_setpoints:105=1500:limit=0..1200"]
	not interlock.decision.allow with input as call(fc6(105, 700), [])
	not interlock.decision.allow with input as call(fc6(200, 1), [t1])
}

# decision.rego takes change tickets' passes as the decision's (no union with
# modbus-ranges'): that holds only while modbus-ranges passes on nothing.
test_modbus_ranges_passes_nothing if {
	c := call(fc6(105, 7), [t1])
	count(interlock.modbus_ranges.passes) == 0 with input as c with data.modbus_ranges as cfg
	count(interlock.modbus_ranges.passes) == 0 with input as call(fc6(500, 7), []) with data.modbus_ranges as cfg
}
