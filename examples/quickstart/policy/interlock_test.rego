package interlock_test

import data.interlock

alice := {"user": "alice", "auth": "inventory", "roles": ["engineer"]}

bob := {"user": "bob", "auth": "inventory", "roles": ["operator"]}

nobody := {"auth": "none", "roles": []}

window := [{"name": "CHG-1", "start": "2026-11-26T06:00:00Z", "end": "2026-11-26T10:00:00Z", "targets": ["plc1"]}]

in_window := time.parse_rfc3339_ns("2026-11-26T07:00:00Z")

after_window := time.parse_rfc3339_ns("2026-11-26T11:00:00Z")

call(principal, source, operation) := {
	"principal": principal,
	"source": source,
	"target": {"name": "plc1", "upstream": "tcp://127.0.0.1:502", "unit_id": 1},
	"protocol": "modbus",
	"operation": operation,
	"tickets": [],
}

with_tickets(c, tickets) := object.union(c, {"tickets": tickets})

alice_ticket := {
	"id": "T-1", "user": "alice", "targets": ["plc1"], "access": ["write"], "reason": "CHG-1234",
	"opened_by": "root", "opened": "2026-11-26T10:30:00Z", "expires": "2026-11-26T12:30:00Z", "approvals": [],
}

read_hr := {"function": "read_holding_registers", "code": 3, "access": "read", "address": 100, "quantity": 2}

write_hr(address, quantity) := {
	"function": "write_multiple_registers", "code": 16, "access": "write",
	"address": address, "quantity": quantity, "values": [1 | some _ in numbers.range(1, quantity)],
}

test_read_allowed_for_anyone if {
	d := interlock.decision with input as call(bob, {"name": "hmi-1"}, read_hr)
	d.allow
	not d.alert
}

test_read_from_unknown_source_alerts if {
	d := interlock.decision with input as call(nobody, {"ip": "10.9.9.9"}, read_hr)
	d.allow
	d.alert
}

test_write_by_engineer_in_window_allowed if {
	d := interlock.decision with input as call(alice, {"name": "ews-alice"}, write_hr(100, 2))
		with data.maintenance_windows as window
		with time.now_ns as in_window
	d.allow
	not d.alert
	d.reasons == ["maintenance_window:CHG-1"]
}

test_write_outside_window_denied if {
	d := interlock.decision with input as call(alice, {"name": "ews-alice"}, write_hr(100, 2))
		with data.maintenance_windows as window
		with time.now_ns as after_window
	not d.allow
	d.reasons == ["outside_maintenance_window"]
}

test_window_end_is_exclusive if {
	d := interlock.decision with input as call(alice, {"name": "ews-alice"}, write_hr(100, 2))
		with data.maintenance_windows as window
		with time.now_ns as time.parse_rfc3339_ns("2026-11-26T10:00:00Z")
	not d.allow
}

test_write_by_operator_denied if {
	d := interlock.decision with input as call(bob, {"name": "ews-alice"}, write_hr(100, 2))
		with data.maintenance_windows as window
		with time.now_ns as in_window
	not d.allow
	d.reasons == ["account_not_approved"]
}

test_write_from_unapproved_source_denied if {
	d := interlock.decision with input as call(alice, {"name": "laptop-7"}, write_hr(100, 2))
		with data.maintenance_windows as window
		with time.now_ns as in_window
	not d.allow
	d.reasons == ["source_not_approved"]
}

test_write_from_unknown_source_denied if {
	d := interlock.decision with input as call(nobody, {"ip": "10.9.9.9"}, write_hr(100, 2))
		with data.maintenance_windows as window
		with time.now_ns as in_window
	not d.allow
	"account_not_approved" in d.reasons
	"source_not_approved" in d.reasons
}

test_write_to_protected_range_alerts if {
	d := interlock.decision with input as call(alice, {"name": "ews-alice"}, write_hr(198, 3))
		with data.maintenance_windows as window
		with time.now_ns as in_window
	d.allow
	d.alert
	"protected_range:safety_limits" in d.reasons
}

test_write_next_to_protected_range_does_not_alert if {
	d := interlock.decision with input as call(alice, {"name": "ews-alice"}, write_hr(210, 5))
		with data.maintenance_windows as window
		with time.now_ns as in_window
	d.allow
	not d.alert
}

test_mask_write_in_protected_range_alerts if {
	op := {"function": "mask_write_register", "code": 22, "access": "write", "address": 205, "and_mask": 0, "or_mask": 1}
	d := interlock.decision with input as call(alice, {"name": "ews-alice"}, op)
		with data.maintenance_windows as window
		with time.now_ns as in_window
	d.allow
	d.alert
}

test_diagnostics_denied if {
	op := {"function": "diagnostics", "code": 8, "access": "diagnostic", "sub_function": 1}
	d := interlock.decision with input as call(alice, {"name": "ews-alice"}, op)
	not d.allow
	d.reasons == ["diagnostics_denied"]
}

test_device_identification_allowed if {
	op := {"function": "read_device_identification", "code": 43, "access": "diagnostic", "mei_type": 14}
	d := interlock.decision with input as call(bob, {"name": "hmi-1"}, op)
	d.allow
}

test_unknown_function_denied if {
	op := {"function": "unknown", "code": 90, "access": "program", "data": "0102"}
	d := interlock.decision with input as call(alice, {"name": "ews-alice"}, op)
		with data.maintenance_windows as window
		with time.now_ns as in_window
	not d.allow
	d.reasons == ["unknown_function_denied"]
}

test_session_open_allowed if {
	d := interlock.decision with input as call(nobody, {"ip": "10.9.9.9"}, {"function": "session.open", "access": "session"})
	d.allow
	d.alert
}

test_write_under_ticket_allowed_and_named if {
	d := interlock.decision with input as with_tickets(call(alice, {"name": "ews-alice"}, write_hr(100, 2)), [alice_ticket])
		with data.maintenance_windows as window
		with time.now_ns as after_window
	d.allow
	d.ticket == "T-1"
	d.reasons == ["ticket:T-1"]
}

test_ticket_for_another_user_does_not_allow if {
	t := object.union(alice_ticket, {"user": "bob"})
	d := interlock.decision with input as with_tickets(call(alice, {"name": "ews-alice"}, write_hr(100, 2)), [t])
		with data.maintenance_windows as window
		with time.now_ns as after_window
	not d.allow
	not d.ticket
}

test_ticket_does_not_make_an_operator_an_engineer if {
	t := object.union(alice_ticket, {"user": "bob"})
	d := interlock.decision with input as with_tickets(call(bob, {"name": "ews-alice"}, write_hr(100, 2)), [t])
		with data.maintenance_windows as window
		with time.now_ns as after_window
	not d.allow
	d.reasons == ["account_not_approved"]
}

test_window_wins_over_ticket_in_the_record if {
	d := interlock.decision with input as with_tickets(call(alice, {"name": "ews-alice"}, write_hr(100, 2)), [alice_ticket])
		with data.maintenance_windows as window
		with time.now_ns as in_window
	d.allow
	not d.ticket
	d.reasons == ["maintenance_window:CHG-1"]
}

test_recurring_window if {
	monthly := [{"name": "monthly", "cron": "0 5 1 * *", "duration": "3h", "tz": "Europe/Berlin", "targets": ["plc1"]}]
	inside := interlock.decision with input as call(alice, {"name": "ews-alice"}, write_hr(100, 2))
		with data.maintenance_windows as monthly
		with time.now_ns as time.parse_rfc3339_ns("2026-12-01T06:30:00+01:00")
	inside.allow
	outside := interlock.decision with input as call(alice, {"name": "ews-alice"}, write_hr(100, 2))
		with data.maintenance_windows as monthly
		with time.now_ns as time.parse_rfc3339_ns("2026-12-02T06:30:00+01:00")
	not outside.allow
}

# --- the short ways for allowed writes -----------------------------------------
#
# write_decision decides an allowed write that touches no protected range in
# one of two short ways (interlock.rego); every write must get what the
# general way gives.

general_write_decision := object.union(
	{"allow": count(interlock.write_denials) == 0, "alert": interlock.alert_write, "reasons": interlock.write_reasons},
	interlock.ticket_field,
)

two_windows := array.concat(window, [{"name": "CHG-0", "start": "2026-11-26T05:00:00Z", "end": "2026-11-26T09:00:00Z", "targets": ["plc1"]}])

short_way_writes := [
	# [call, time]: in one window, in two, under a ticket, under two, both
	[call(alice, {"name": "ews-alice"}, write_hr(100, 2)), in_window],
	[with_tickets(call(alice, {"name": "ews-alice"}, write_hr(100, 2)), [alice_ticket]), after_window],
	[with_tickets(call(alice, {"name": "ews-alice"}, write_hr(100, 2)), [alice_ticket, object.union(alice_ticket, {"id": "T-0"})]), after_window],
	[with_tickets(call(alice, {"name": "ews-alice"}, write_hr(100, 2)), [alice_ticket]), in_window],
	# not short: a protected range, a denial
	[call(alice, {"name": "ews-alice"}, write_hr(199, 2)), in_window],
	[with_tickets(call(alice, {"name": "ews-alice"}, write_hr(205, 1)), [alice_ticket]), after_window],
	[call(alice, {"name": "ews-alice"}, write_hr(100, 2)), after_window],
	[call(bob, {"name": "ews-alice"}, write_hr(100, 2)), in_window],
	[call(alice, {"name": "ews-bob"}, write_hr(100, 2)), in_window],
	[with_tickets(call(alice, {"name": "ews-bob"}, write_hr(100, 2)), [alice_ticket]), after_window],
	[with_tickets(call(bob, {"name": "ews-alice"}, write_hr(100, 2)), [object.union(alice_ticket, {"user": "bob"})]), after_window],
	[call(alice, {"name": "ews-alice"}, {"function": "mask_write_register", "code": 22, "access": "write", "address": 201, "and_mask": 0, "or_mask": 1}), in_window],
]

test_short_ways_give_what_the_general_way_gives if {
	every w in short_way_writes {
		d := interlock.decision with input as w[0] with data.maintenance_windows as window with time.now_ns as w[1]
		g := general_write_decision with input as w[0] with data.maintenance_windows as window with time.now_ns as w[1]
		d == g
	}
	every w in short_way_writes {
		d := interlock.decision with input as w[0] with data.maintenance_windows as two_windows with time.now_ns as w[1]
		g := general_write_decision with input as w[0] with data.maintenance_windows as two_windows with time.now_ns as w[1]
		d == g
	}
}

test_short_ways_taken if {
	every w in array.slice(short_way_writes, 0, 4) {
		d := interlock.decision with input as w[0] with data.maintenance_windows as window with time.now_ns as w[1]
		d.allow
		not d.alert
	}
	d := interlock.decision with input as short_way_writes[2][0] with data.maintenance_windows as window with time.now_ns as after_window
	d.ticket == "T-0"
	d.reasons == ["ticket:T-0", "ticket:T-1"]
	d2 := interlock.decision with input as short_way_writes[0][0] with data.maintenance_windows as two_windows with time.now_ns as in_window
	d2.reasons == ["maintenance_window:CHG-0", "maintenance_window:CHG-1"]
	not d2.ticket
}

# More writes for the short ways: fields missing, no account, several
# tickets and windows, protected ranges at the edges. Each must get what the
# general way gives.
more_short_way_writes := [
	[with_tickets(call(alice, {"name": "ews-alice"}, write_hr(100, 2)), [alice_ticket, object.union(alice_ticket, {"id": "T-2", "targets": ["plc2"]})]), after_window],
	[with_tickets(call(alice, {"name": "ews-alice"}, write_hr(200, 1)), [alice_ticket]), in_window],
	[with_tickets(call(alice, {"name": "ews-alice"}, write_hr(190, 10)), [alice_ticket]), after_window],
	[with_tickets(call(alice, {"name": "ews-alice"}, write_hr(210, 5)), [alice_ticket]), after_window],
	[with_tickets(call(alice, {}, write_hr(100, 2)), [alice_ticket]), after_window],
	[with_tickets(call(object.remove(alice, ["user"]), {"name": "ews-alice"}, write_hr(100, 2)), [alice_ticket]), in_window],
	[with_tickets(call({"user": "carol", "roles": []}, {"name": "ews-alice"}, write_hr(100, 2)), [object.union(alice_ticket, {"user": "carol"})]), in_window],
	[with_tickets(call(alice, {"name": "ews-alice"}, object.remove(write_hr(100, 2), ["quantity"])), [alice_ticket]), after_window],
	[with_tickets(object.remove(call(alice, {"name": "ews-alice"}, write_hr(100, 2)), ["target"]), [alice_ticket]), in_window],
]

test_short_ways_more_writes if {
	every w in more_short_way_writes {
		every ws in [window, two_windows, []] {
			d := interlock.decision with input as w[0] with data.maintenance_windows as ws with time.now_ns as w[1]
			g := general_write_decision with input as w[0] with data.maintenance_windows as ws with time.now_ns as w[1]
			d == g
		}
	}
}

# The write ways name the access kind: every other call gets its own way.
test_short_ways_only_for_writes if {
	interlock.decision == {"allow": true, "alert": false, "reasons": ["read"]} with input as call(alice, {"name": "ews-alice"}, read_hr)
	interlock.decision == {"allow": false, "alert": true, "reasons": ["no_rule_allows"]} with input as call(alice, {"name": "ews-alice"}, object.remove(write_hr(100, 2), ["access"]))
	interlock.decision == {"allow": false, "alert": true, "reasons": ["no_rule_allows"]} with input as call(alice, {"name": "ews-alice"}, object.union(write_hr(100, 2), {"access": "execute"}))
	interlock.decision == {"allow": false, "alert": true, "reasons": ["unknown_function_denied"]} with input as with_tickets(call(alice, {"name": "ews-alice"}, {"function": "unknown", "code": 90, "access": "program"}), [alice_ticket])
}
