package interlock.maintenance_windows_test

import data.interlock

# --- fixtures ----------------------------------------------------------------

alice := {"user": "alice", "auth": "inventory", "roles": ["engineer"]}

dave := {"user": "dave", "auth": "inventory", "roles": ["engineer"]}

bob := {"user": "bob", "auth": "inventory", "roles": ["operator"]}

nobody := {"auth": "none", "roles": []}

call(principal, target, access) := {
	"protocol": "modbus",
	"principal": principal,
	"source": {"ip": "10.0.5.7", "port": 50123},
	"target": {"name": target, "upstream": "tcp://10.0.0.20:502", "unit_id": 1},
	"operation": {"function": "write_single_register", "access": access, "code": 6, "address": 100, "values": [1]},
	"tickets": [],
}

write(principal) := call(principal, "plc1", "write")

ns(t) := time.parse_rfc3339_ns(t)

one_off := {
	"name": "CHG-1",
	"start": "2026-11-26T06:00:00Z",
	"end": "2026-11-26T10:00:00Z",
	"targets": ["plc1"],
	"access": ["write"],
}

# Saturdays 06:00-10:00 in Berlin: 05:00-09:00 UTC in winter (CET, UTC+1),
# 04:00-08:00 UTC in summer (CEST, UTC+2). Summer time began on Sunday
# 2026-03-29.
weekly := {
	"name": "weekly",
	"cron": "0 6 * * SAT",
	"duration": "4h",
	"tz": "Europe/Berlin",
	"targets": ["plc1"],
	"access": ["write"],
	"roles": ["engineer"],
}

# Daily 01:00 Berlin for 3h of elapsed time, across both changes.
nightly := {"name": "nightly", "cron": "0 1 * * *", "duration": "3h", "tz": "Europe/Berlin", "targets": ["plc1"], "access": ["write"]}

decide(c, windows, at) := d if {
	d := interlock.decision with input as c
		with data.maintenance_windows as {"windows": windows}
		with time.now_ns as ns(at)
}

allowed(c, windows, at) if decide(c, windows, at).allow

# --- one-off windows: edges ------------------------------------------------------

test_one_off_start_is_inclusive if {
	allowed(write(alice), [one_off], "2026-11-26T06:00:00Z")
	not allowed(write(alice), [one_off], "2026-11-26T05:59:59.999999999Z")
}

test_one_off_end_is_exclusive if {
	allowed(write(alice), [one_off], "2026-11-26T09:59:59.999999999Z")
	not allowed(write(alice), [one_off], "2026-11-26T10:00:00Z")
}

test_one_off_with_offsets if {
	w := object.union(one_off, {"start": "2026-11-26T07:00:00+01:00", "end": "2026-11-26T11:00:00+01:00"})
	allowed(write(alice), [w], "2026-11-26T06:00:00Z")
	not allowed(write(alice), [w], "2026-11-26T10:00:00Z")
}

test_reasons_name_the_window_or_the_miss if {
	inside := decide(write(alice), [one_off], "2026-11-26T07:00:00Z")
	inside.reasons == ["maintenance-window:pass:CHG-1"]
	not inside.alert
	outside := decide(write(alice), [one_off], "2026-11-26T11:00:00Z")
	not outside.allow
	outside.alert
	outside.reasons == ["maintenance-window:enforced:outside_maintenance_window:plc1:write"]
}

test_every_open_window_is_named if {
	other := object.union(one_off, {"name": "CHG-2", "end": "2026-11-26T08:00:00Z"})
	d := decide(write(alice), [one_off, other], "2026-11-26T07:00:00Z")
	d.reasons == ["maintenance-window:pass:CHG-1", "maintenance-window:pass:CHG-2"]
}

# --- recurring windows: edges and daylight saving time -------------------------------

test_recurring_edges_in_winter if {
	# Saturday 2026-03-21, CET: 06:00 local is 05:00 UTC.
	not allowed(write(alice), [weekly], "2026-03-21T04:59:59.999999999Z")
	allowed(write(alice), [weekly], "2026-03-21T05:00:00Z")
	allowed(write(alice), [weekly], "2026-03-21T08:59:59.999999999Z")
	not allowed(write(alice), [weekly], "2026-03-21T09:00:00Z")
}

test_recurring_follows_the_time_zone_into_summer_time if {
	# Saturday 2026-04-04, CEST: 06:00 local is 04:00 UTC. A window fixed to
	# UTC+1 would still be closed at 04:30 UTC and open at 08:30 UTC.
	not allowed(write(alice), [weekly], "2026-04-04T03:59:59.999999999Z")
	allowed(write(alice), [weekly], "2026-04-04T04:00:00Z")
	allowed(write(alice), [weekly], "2026-04-04T04:30:00Z")
	allowed(write(alice), [weekly], "2026-04-04T07:59:59.999999999Z")
	not allowed(write(alice), [weekly], "2026-04-04T08:00:00Z")
	not allowed(write(alice), [weekly], "2026-04-04T08:30:00Z")
}

test_recurring_back_to_winter_time if {
	# Summer time ended on Sunday 2026-10-25: Saturday 10-24 is still CEST,
	# Saturday 10-31 is CET.
	allowed(write(alice), [weekly], "2026-10-24T04:00:00Z")
	not allowed(write(alice), [weekly], "2026-10-24T08:00:00Z")
	not allowed(write(alice), [weekly], "2026-10-31T04:30:00Z")
	allowed(write(alice), [weekly], "2026-10-31T05:00:00Z")
	allowed(write(alice), [weekly], "2026-10-31T08:30:00Z")
}

test_duration_is_elapsed_time_across_spring_forward if {
	# 2026-03-29 01:00 CET = 00:00 UTC; clocks jump 02:00 -> 03:00; 3h of
	# elapsed time ends at 03:00 UTC (05:00 CEST), not at 04:00 local.
	allowed(write(alice), [nightly], "2026-03-29T00:00:00Z")
	allowed(write(alice), [nightly], "2026-03-29T02:59:59.999999999Z")
	not allowed(write(alice), [nightly], "2026-03-29T03:00:00Z")
}

test_duration_is_elapsed_time_across_fall_back if {
	# 2026-10-25 01:00 CEST = 2026-10-24 23:00 UTC; clocks fall back 03:00 ->
	# 02:00; 3h of elapsed time ends at 02:00 UTC (03:00 CET).
	not allowed(write(alice), [nightly], "2026-10-24T22:59:59.999999999Z")
	allowed(write(alice), [nightly], "2026-10-24T23:00:00Z")
	allowed(write(alice), [nightly], "2026-10-25T01:59:59.999999999Z")
	not allowed(write(alice), [nightly], "2026-10-25T02:00:00Z")
}

test_recurring_in_another_time_zone if {
	# Weekdays 08:00-09:00 New York; US summer time began on 2026-03-08.
	ny := {"name": "ny", "cron": "0 8 * * MON-FRI", "duration": "1h", "tz": "America/New_York", "targets": ["plc1"], "access": ["write"]}
	allowed(write(alice), [ny], "2026-03-06T13:30:00Z") # Friday, EST (UTC-5)
	not allowed(write(alice), [ny], "2026-03-06T12:30:00Z")
	allowed(write(alice), [ny], "2026-03-09T12:30:00Z") # Monday, EDT (UTC-4)
	not allowed(write(alice), [ny], "2026-03-09T13:30:00Z")
	not allowed(write(alice), [ny], "2026-03-07T13:30:00Z") # Saturday
}

test_recurring_without_tz_is_utc if {
	utc := object.remove(weekly, ["tz"])
	allowed(write(alice), [utc], "2026-04-04T06:00:00Z")
	not allowed(write(alice), [utc], "2026-04-04T05:59:00Z")
}

# --- scope ----------------------------------------------------------------------

test_window_for_a_role_does_not_open_for_other_roles if {
	d := decide(write(bob), [weekly], "2026-04-04T05:00:00Z")
	not d.allow
}

test_window_for_a_user_does_not_open_for_others_with_the_same_role if {
	w := object.union(one_off, {"users": ["alice"]})
	allowed(write(alice), [w], "2026-11-26T07:00:00Z")
	not allowed(write(dave), [w], "2026-11-26T07:00:00Z")
}

test_users_or_roles if {
	w := object.union(one_off, {"users": ["bob"], "roles": ["engineer"]})
	allowed(write(bob), [w], "2026-11-26T07:00:00Z")
	allowed(write(dave), [w], "2026-11-26T07:00:00Z")
	not allowed(write(nobody), [w], "2026-11-26T07:00:00Z")
}

test_unscoped_window_opens_for_every_account if {
	allowed(write(bob), [one_off], "2026-11-26T07:00:00Z")
	allowed(write(nobody), [one_off], "2026-11-26T07:00:00Z")
}

test_empty_user_list_opens_for_nobody if {
	w := object.union(one_off, {"users": []})
	not allowed(write(alice), [w], "2026-11-26T07:00:00Z")
}

test_window_for_another_target_does_not_open if {
	not allowed(call(alice, "plc2", "write"), [one_off], "2026-11-26T07:00:00Z")
}

test_any_target if {
	w := object.union(one_off, {"targets": ["*"]})
	allowed(call(alice, "plc2", "write"), [w], "2026-11-26T07:00:00Z")
}

test_window_for_writes_does_not_open_for_program_or_execute if {
	not allowed(call(alice, "plc1", "program"), [one_off], "2026-11-26T07:00:00Z")
	not allowed(call(alice, "plc1", "execute"), [one_off], "2026-11-26T07:00:00Z")
	w := object.union(one_off, {"access": ["*"]})
	allowed(call(alice, "plc1", "program"), [w], "2026-11-26T07:00:00Z")
}

test_window_without_targets_or_access_opens_nothing if {
	not allowed(write(alice), [object.remove(one_off, ["targets"])], "2026-11-26T07:00:00Z")
	not allowed(write(alice), [object.remove(one_off, ["access"])], "2026-11-26T07:00:00Z")
}

test_reads_pass_at_any_time if {
	d := decide(call(bob, "plc1", "read"), [], "2026-11-26T11:00:00Z")
	d.allow
	not d.alert
	d.reasons == []
	decide(call(bob, "plc1", "session"), [], "2026-11-26T11:00:00Z").allow
}

test_governed_access_is_configurable if {
	c := call(alice, "plc1", "diagnostic")
	allowed(c, [], "2026-11-26T11:00:00Z")
	d := interlock.decision with input as c
		with data.maintenance_windows as {"windows": [], "governed_access": ["write", "diagnostic"]}
		with time.now_ns as ns("2026-11-26T11:00:00Z")
	not d.allow
	d.reasons == ["maintenance-window:enforced:outside_maintenance_window:plc1:diagnostic"]
}

test_no_windows_no_writes if {
	not allowed(write(alice), [], "2026-11-26T07:00:00Z")
	d := interlock.decision with input as write(alice) with data.maintenance_windows as {}
	not d.allow
}

test_malformed_window_out_of_scope_is_not_evaluated if {
	# Only windows in scope reach the builtin; a malformed one in scope
	# denies the call with a policy error.
	broken := {"name": "broken", "cron": "not a cron", "duration": "1h", "targets": ["plc2"], "access": ["write"]}
	allowed(write(alice), [broken, one_off], "2026-11-26T07:00:00Z")
}

# --- staging --------------------------------------------------------------------

test_staged_window_rule_alerts_without_blocking if {
	d := decide(write(alice), [one_off], "2026-11-26T11:00:00Z") with data.staging as ["maintenance-window"]
	d.allow
	d.alert
	d.reasons == ["maintenance-window:monitor:outside_maintenance_window:plc1:write"]
}

# --- the shipped data.yaml ------------------------------------------------------

test_shipped_data if {
	# CHG-0042: alice only.
	interlock.decision.allow with input as write(alice) with time.now_ns as ns("2026-12-05T23:00:00Z")
	not interlock.decision.allow with input as write(dave) with time.now_ns as ns("2026-12-05T23:00:00Z")

	# weekly tuning: any engineer, Saturday morning in Berlin.
	interlock.decision.allow with input as write(dave) with time.now_ns as ns("2026-12-12T06:30:00+01:00")
	not interlock.decision.allow with input as write(bob) with time.now_ns as ns("2026-12-12T06:30:00+01:00")

	# quarterly firmware: program downloads on any target.
	p := call(dave, "drives", "program")
	interlock.decision.allow with input as p with time.now_ns as ns("2027-01-01T03:00:00+01:00")
	not interlock.decision.allow with input as p with time.now_ns as ns("2027-01-02T03:00:00+01:00")
}

# governed is read from data as data gives it (maintenance_windows.rego): an
# empty list governs nothing, a missing or false one means the default, and
# a set or an object's values work as a list does.
test_governed_access_forms if {
	c := call(alice, "plc1", "write")
	at := ns("2026-11-26T11:00:00Z")
	interlock.decision.allow with input as c with data.maintenance_windows as {"windows": [], "governed_access": []} with time.now_ns as at
	not interlock.decision.allow with input as c with data.maintenance_windows as {"windows": [], "governed_access": false} with time.now_ns as at
	not interlock.decision.allow with input as c with data.maintenance_windows as {"windows": []} with time.now_ns as at
	not interlock.decision.allow with input as c with data.maintenance_windows as {"windows": [], "governed_access": {"write"}} with time.now_ns as at
	not interlock.decision.allow with input as c with data.maintenance_windows as {"windows": [], "governed_access": {"a": "write"}} with time.now_ns as at
	interlock.decision.allow with input as call(alice, "plc1", "program") with data.maintenance_windows as {"windows": [], "governed_access": ["write"]} with time.now_ns as at
}

# passes is made directly from the windows in scope (maintenance_windows.rego):
# every open window in scope is named once, sorted, an unnamed one as
# "unnamed", whatever form its scope takes; a window out of scope is never
# asked (a malformed one there denies nothing).
scoped_windows := [
	object.union(one_off, {"name": "users", "users": ["alice"]}),
	object.union(one_off, {"name": "roles", "roles": ["operator", "engineer"]}),
	object.union(one_off, {"name": "both", "users": ["carol"], "roles": ["engineer"]}),
	object.union(one_off, {"name": "wildcards", "targets": ["*"], "access": ["*"]}),
	object.union(one_off, {"name": "listed twice", "targets": ["plc1", "*"], "access": ["write", "*"]}),
	object.remove(one_off, ["name"]),
	object.union(one_off, {"name": "other target", "targets": ["plc2"]}),
	object.union(one_off, {"name": "other access", "access": ["program"]}),
	object.union(one_off, {"name": "other user", "users": ["bob"]}),
	{"name": "broken elsewhere", "cron": "0 6 * *", "duration": "4h", "targets": ["plc2"], "access": ["write"]},
	object.union(one_off, {"name": "closed", "start": "2026-11-27T06:00:00Z", "end": "2026-11-27T10:00:00Z"}),
]

test_passes_name_the_open_windows_in_scope if {
	d := decide(write(alice), scoped_windows, "2026-11-26T07:00:00Z")
	d == {"allow": true, "alert": false, "reasons": [
		"maintenance-window:pass:both", "maintenance-window:pass:listed twice",
		"maintenance-window:pass:roles", "maintenance-window:pass:unnamed",
		"maintenance-window:pass:users", "maintenance-window:pass:wildcards",
	]}
	b := decide(write(bob), scoped_windows, "2026-11-26T07:00:00Z")
	b.reasons == [
		"maintenance-window:pass:listed twice", "maintenance-window:pass:other user",
		"maintenance-window:pass:roles", "maintenance-window:pass:unnamed",
		"maintenance-window:pass:wildcards",
	]
	n := decide(write(alice), scoped_windows, "2026-11-26T11:00:00Z")
	n == {"allow": false, "alert": true, "reasons": ["maintenance-window:enforced:outside_maintenance_window:plc1:write"]}
	r := decide(call(alice, "plc1", "read"), scoped_windows, "2026-11-26T07:00:00Z")
	r == {"allow": true, "alert": false, "reasons": []}
}
