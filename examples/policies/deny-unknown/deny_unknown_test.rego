package interlock.deny_unknown_test

import data.interlock

# --- fixtures ----------------------------------------------------------------

alice := {"user": "alice", "auth": "inventory", "roles": ["engineer"]}

bob := {"user": "bob", "auth": "inventory", "roles": ["operator"]}

carol := {"user": "carol", "auth": "inventory", "roles": ["drive-engineer"]}

cfg := {
	"vendor_codes": {
		"plc1": [{"code": 90, "name": "umas", "roles": ["engineer"]}],
		"drives": [
			{"code": 43, "mei_type": 13, "name": "canopen_sdo", "users": ["carol"]},
			{"code": 100, "name": "drive_parameter_read"},
			{"code": 3, "name": "not_a_vendor_code"},
		],
	},
}

call(principal, target, op) := {
	"protocol": "modbus",
	"principal": principal,
	"source": {"ip": "10.0.5.7", "port": 50123, "name": "ews-alice"},
	"target": {"name": target, "upstream": "tcp://10.0.0.20:502", "unit_id": 1},
	"operation": op,
	"tickets": [],
}

decide(principal, target, op) := d if {
	d := interlock.decision with input as call(principal, target, op) with data.deny_unknown as cfg
}

allowed(principal, target, op) if decide(principal, target, op).allow

unknown(code, payload) := {"function": "unknown", "code": code, "access": "program", "data": payload}

canopen := {"function": "canopen_general_reference", "code": 43, "access": "program", "mei_type": 13, "data": "0102"}

diagnostics(sub, name) := {"function": "diagnostics", "code": 8, "access": "diagnostic", "sub_function": sub, "sub_function_name": name, "values": [0]}

# --- unknown and vendor codes ----------------------------------------------------------

test_unknown_code_denied if {
	d := decide(alice, "plc1", unknown(65, "00"))
	not d.allow
	d.alert
	d.reasons == ["unknown-function:enforced:unknown_function:65"]
}

test_every_unlisted_code_denied if {
	every c in [0, 9, 10, 13, 14, 18, 19, 25, 41, 42, 65, 72, 90, 100, 110, 127] {
		not allowed(alice, "plc2", unknown(c, ""))
	}
}

test_vendor_code_allowed_on_its_target_for_its_callers if {
	d := decide(alice, "plc1", unknown(90, "0002"))
	d.allow
	not d.alert
	d.reasons == ["unknown-function:pass:vendor_code:90:umas"]
	op := decide(bob, "plc1", unknown(90, "0002"))
	not op.allow
	op.reasons == ["unknown-function:enforced:unknown_function:90"]
	not allowed(alice, "plc2", unknown(90, "0002"))
}

test_vendor_entry_without_users_or_roles_is_for_everyone if {
	allowed(bob, "drives", unknown(100, "01"))
	not allowed(bob, "drives", unknown(101, "01"))
}

test_other_mei_types_are_unknown_codes if {
	d := decide(carol, "drives", unknown(43, "0f00"))
	d.reasons == ["unknown-function:enforced:unknown_function:43"]
}

test_vendor_entry_does_not_touch_known_functions if {
	d := decide(bob, "drives", {"function": "read_holding_registers", "code": 3, "access": "read", "address": 0, "quantity": 1})
	d.allow
	d.reasons == []
}

test_program_access_of_a_named_function_is_an_unknown_code if {
	# A future decoder that names a program function gets no free pass.
	d := decide(alice, "plc1", {"function": "umas_download", "code": 90, "access": "program"})
	d.allow # listed for plc1
	not allowed(alice, "plc2", {"function": "umas_download", "code": 90, "access": "program"})
}

# --- CANopen ------------------------------------------------------------------------

test_canopen_denied if {
	d := decide(alice, "plc1", canopen)
	not d.allow
	d.reasons == ["canopen:enforced:canopen_denied"]
}

test_canopen_allowed_by_a_vendor_entry_with_its_mei_type if {
	d := decide(carol, "drives", canopen)
	d.allow
	d.reasons == ["canopen:pass:vendor_code:43:canopen_sdo"]
	not allowed(alice, "drives", canopen) # the entry is for carol
}

# --- diagnostics -------------------------------------------------------------------

test_diagnostics_loopback_allowed if {
	d := decide(bob, "plc1", diagnostics(0, "return_query_data"))
	d.allow
	not d.alert
}

test_diagnostics_that_change_the_device_denied if {
	every sub in [[1, "restart_communications"], [3, "change_ascii_delimiter"], [4, "force_listen_only"], [10, "clear_counters"], [20, "clear_overrun_counter"]] {
		d := decide(alice, "plc1", diagnostics(sub[0], sub[1]))
		not d.allow
		d.reasons == [concat(":", ["diagnostics:enforced:diagnostics_denied", sub[1]])]
	}
}

test_reserved_diagnostics_sub_function_denied if {
	d := decide(alice, "plc1", diagnostics(99, "unknown"))
	d.reasons == ["diagnostics:enforced:diagnostics_denied:unknown"]
	d2 := decide(alice, "plc1", object.remove(diagnostics(99, "unknown"), ["sub_function_name"]))
	d2.reasons == ["diagnostics:enforced:diagnostics_denied:unknown"]
}

test_allowed_diagnostics_are_configurable if {
	counters := object.union(cfg, {"allowed_diagnostics": ["return_query_data", "return_bus_message_count"]})
	op := diagnostics(11, "return_bus_message_count")
	not allowed(bob, "plc1", op)
	interlock.decision.allow with input as call(bob, "plc1", op) with data.deny_unknown as counters
	not interlock.decision.allow with input as call(bob, "plc1", diagnostics(1, "restart_communications")) with data.deny_unknown as counters
}

test_other_diagnostic_functions_pass if {
	every op in [
		{"function": "read_exception_status", "code": 7, "access": "diagnostic"},
		{"function": "get_comm_event_counter", "code": 11, "access": "diagnostic"},
		{"function": "get_comm_event_log", "code": 12, "access": "diagnostic"},
		{"function": "report_server_id", "code": 17, "access": "diagnostic"},
		{"function": "read_device_identification", "code": 43, "access": "diagnostic", "mei_type": 14, "read_device_id_code": 1, "object_id": 0},
	] {
		allowed(bob, "plc1", op)
	}
}

# --- what this module leaves alone ------------------------------------------------------

test_reads_writes_sessions_and_other_protocols_pass if {
	allowed(bob, "plc1", {"function": "write_single_register", "code": 6, "access": "write", "address": 1, "values": [1]})
	allowed(bob, "plc1", {"function": "session.open", "access": "session"})
	opcua := object.union(call(bob, "line1", {"function": "call", "access": "execute", "object_id": "o", "method_id": "m"}), {"protocol": "opcua"})
	interlock.decision.allow with input as opcua with data.deny_unknown as cfg
}

test_without_data_every_unknown_code_and_diagnostic_but_loopback_denied if {
	not interlock.decision.allow with input as call(alice, "plc1", unknown(90, "")) with data.deny_unknown as {}
	not interlock.decision.allow with input as call(alice, "plc1", canopen) with data.deny_unknown as {}
	not interlock.decision.allow with input as call(alice, "plc1", diagnostics(1, "restart_communications")) with data.deny_unknown as {}
	interlock.decision.allow with input as call(alice, "plc1", diagnostics(0, "return_query_data")) with data.deny_unknown as {}
}

# --- staging -------------------------------------------------------------------------

test_staged_diagnostics_rule_alerts_while_unknown_codes_stay_blocked if {
	d := decide(alice, "plc1", diagnostics(1, "restart_communications")) with data.staging as ["diagnostics"]
	d.allow
	d.alert
	d.reasons == ["diagnostics:monitor:diagnostics_denied:restart_communications"]
	not allowed(alice, "plc2", unknown(90, "")) with data.staging as ["diagnostics"]
}

# --- the shipped data.json --------------------------------------------------------------

test_shipped_data if {
	interlock.decision.allow with input as call(alice, "plc1", unknown(90, "0002"))
	not interlock.decision.allow with input as call(bob, "plc1", unknown(90, "0002"))
	interlock.decision.allow with input as call(carol, "drives", canopen)
	not interlock.decision.allow with input as call(alice, "plc1", canopen)
	not interlock.decision.allow with input as call(alice, "plc1", diagnostics(4, "force_listen_only"))
}
