package interlock_test

import data.interlock

# Times: 2026-11-28 is a Saturday; the weekly window is 06:00-10:00 Berlin
# time (05:00-09:00 UTC in winter). The one-off window for alice is
# 2026-12-05 22:00 to 2026-12-06 04:00 UTC.
in_weekly := time.parse_rfc3339_ns("2026-11-28T06:30:00Z")

outside := time.parse_rfc3339_ns("2026-11-26T12:00:00Z")

in_one_off := time.parse_rfc3339_ns("2026-12-05T23:00:00Z")

known_app := "urn:interlock:test:engineering-client"

alice := {"user": "alice", "auth": "username", "roles": [], "application_uri": known_app, "cert_thumbprint": "5d0b3c17a9e2f4c6b8d1e3f5a7c9b2d4e6f80a1c"}

bob := {"user": "bob", "auth": "username", "roles": [], "application_uri": known_app, "cert_thumbprint": "5d0b3c17a9e2f4c6b8d1e3f5a7c9b2d4e6f80a1c"}

anon := {"auth": "anonymous", "roles": [], "application_uri": known_app, "cert_thumbprint": "5d0b3c17a9e2f4c6b8d1e3f5a7c9b2d4e6f80a1c"}

mallory := {"user": "mallory", "auth": "username", "roles": [], "application_uri": known_app, "cert_thumbprint": "5d0b3c17a9e2f4c6b8d1e3f5a7c9b2d4e6f80a1c"}

call(principal, operation) := {
	"time": "2026-11-26T12:00:00Z",
	"gateway": {"id": "site-a-gw1", "listener": "line1"},
	"session": {"id": "s-1", "security_policy": "Basic256Sha256", "security_mode": "SignAndEncrypt"},
	"source": {"ip": "10.0.0.5", "port": 50123},
	"principal": principal,
	"target": {"name": "line1", "upstream": "opc.tcp://10.0.0.20:4840"},
	"protocol": "opcua",
	"operation": operation,
	"tickets": [],
}

with_tickets(c, ts) := object.union(c, {"tickets": ts})

open_session := {"function": "session.open", "access": "session"}

read(node) := {"function": "read", "access": "read", "node_id": node, "attribute": "Value"}

write(node, value) := {
	"function": "write", "access": "write", "node_id": node, "browse_path": "/Objects/PLC/Setpoint",
	"attribute": "Value", "value": value, "data_type": "Double",
}

start(args, types) := {
	"function": "call", "access": "execute", "object_id": "ns=1;s=PLC", "method_id": "ns=1;s=Start",
	"browse_path": "/Objects/PLC/Start", "arguments": args, "argument_types": types,
}

browse := {"function": "browse", "access": "browse", "node_id": "i=85"}

publish := {"function": "publish", "access": "subscribe"}

monitor_items := {"function": "create_monitored_items", "access": "subscribe", "node_id": "ns=1;s=Temperature", "attribute": "Value"}

ticket_t1 := {
	"id": "T-1", "user": "alice", "targets": ["line1"], "access": ["write"], "reason": "CHG-1234",
	"opened_by": "root", "opened": "2026-11-26T11:00:00Z", "expires": "2026-11-26T13:00:00Z", "approvals": [],
}

allowed_quietly(d) if {
	d.allow
	not d.alert
}

# --- opcua-session ------------------------------------------------------------------

test_session_opens_for_listed_users if {
	q1 := interlock.decision with input as call(alice, open_session)
	allowed_quietly(q1)
	q2 := interlock.decision with input as call(bob, open_session)
	allowed_quietly(q2)
	x509 := object.union(alice, {"auth": "x509"})
	q3 := interlock.decision with input as call(x509, open_session)
	allowed_quietly(q3)
}

test_session_refused_for_unknown_user if {
	d := interlock.decision with input as call(mallory, open_session)
	not d.allow
	d.alert
	d.reasons == ["opcua-session:enforced:unknown_user:mallory"]
}

test_session_refused_without_user_name if {
	d := interlock.decision with input as call({"auth": "username", "roles": []}, open_session)
	not d.allow
	d.reasons == ["opcua-session:enforced:unknown_user:-"]
}

test_anonymous_session_opens_when_allowed if {
	q4 := interlock.decision with input as call(anon, open_session)
	allowed_quietly(q4)
}

test_anonymous_session_refused_when_not_allowed if {
	d := interlock.decision with input as call(anon, open_session)
		with data.opcua.anonymous as {"allowed": false, "access": ["read"]}
	not d.allow
	d.reasons == ["opcua-session:enforced:anonymous_not_allowed"]
	# Only the boolean true opens: a typo in data fails closed.
	d2 := interlock.decision with input as call(anon, open_session)
		with data.opcua.anonymous as {"allowed": "yes", "access": ["read"]}
	not d2.allow
}

test_anonymous_with_a_listed_name_is_still_anonymous if {
	d := interlock.decision with input as call(object.union(anon, {"user": "alice"}), start([100], ["Int32"]))
	not d.allow
	d.reasons == ["opcua-method:enforced:role_required:engineer:alice:ns=1;s=Start"]
}

# --- opcua-access -----------------------------------------------------------------------

test_operator_reads_browses_and_subscribes if {
	q5 := interlock.decision with input as call(bob, read("ns=1;s=Temperature"))
	allowed_quietly(q5)
	q6 := interlock.decision with input as call(bob, browse)
	allowed_quietly(q6)
	q7 := interlock.decision with input as call(bob, publish)
	allowed_quietly(q7)
	q8 := interlock.decision with input as call(bob, monitor_items)
	allowed_quietly(q8)
}

test_operator_may_not_write_even_in_a_window if {
	d := interlock.decision with input as call(bob, write("ns=1;s=Setpoint", 55.0)) with time.now_ns as in_weekly
	not d.allow
	d.alert
	d.reasons == [
		"maintenance-window:enforced:outside_maintenance_window:line1:write",
		"opcua-access:enforced:access_not_granted:bob:write",
	]
}

test_engineer_reads if {
	q9 := interlock.decision with input as call(alice, read("ns=1;s=Setpoint"))
	allowed_quietly(q9)
}

test_anonymous_reads_only if {
	q10 := interlock.decision with input as call(anon, read("ns=1;s=Pressure"))
	allowed_quietly(q10)
	b := interlock.decision with input as call(anon, browse)
	not b.allow
	b.reasons == ["opcua-access:enforced:access_not_granted:-:browse"]
	s := interlock.decision with input as call(anon, publish)
	not s.allow
	w := interlock.decision with input as call(anon, write("ns=1;s=Setpoint", 1.0)) with time.now_ns as in_weekly
	not w.allow
	"opcua-access:enforced:access_not_granted:-:write" in w.reasons
}

test_anonymous_reads_nothing_when_anonymous_is_off if {
	d := interlock.decision with input as call(anon, read("ns=1;s=Pressure"))
		with data.opcua.anonymous as {"allowed": false, "access": ["read"]}
	not d.allow
	d.reasons == ["opcua-access:enforced:access_not_granted:-:read"]
}

test_unknown_user_gets_nothing if {
	d := interlock.decision with input as call(mallory, read("ns=1;s=Pressure"))
	not d.allow
	d.reasons == ["opcua-access:enforced:access_not_granted:mallory:read"]
	b := interlock.decision with input as call(mallory, browse)
	not b.allow
}

test_program_access_is_granted_to_nobody if {
	d := interlock.decision with input as call(alice, {"function": "add_nodes", "access": "program", "node_id": "ns=1;s=PLC"})
	not d.allow
	d.reasons == ["opcua-access:enforced:access_not_granted:alice:program"]
}

test_roles_from_the_gateway_count_for_listed_users if {
	carol := {"user": "carol", "auth": "username", "roles": ["operator"], "application_uri": known_app, "cert_thumbprint": "5d0b3c17a9e2f4c6b8d1e3f5a7c9b2d4e6f80a1c"}
	users := {"alice": {"roles": ["engineer"]}, "carol": {"roles": []}}
	q11 := interlock.decision with input as call(carol, read("ns=1;s=Pressure")) with data.opcua.users as users
	allowed_quietly(q11)
	d := interlock.decision with input as call(carol, read("ns=1;s=Pressure"))
	not d.allow # carol is not listed in the shipped data
}

test_roles_come_from_policy_data_under_pass_through if {
	# principal.roles is empty with password pass-through: alice's role is
	# in data.opcua.users.
	q12 := interlock.decision with input as call(alice, start([100], ["Int32"]))
	allowed_quietly(q12)
	d := interlock.decision with input as call(alice, start([100], ["Int32"]))
		with data.opcua.users as {"alice": {"roles": ["operator"]}}
	not d.allow
}

# --- opcua-setpoint and maintenance-window ---------------------------------------------------

test_engineer_writes_setpoint_in_weekly_window if {
	d := interlock.decision with input as call(alice, write("ns=1;s=Setpoint", 55.0)) with time.now_ns as in_weekly
	d.allow
	not d.alert
	d.reasons == ["maintenance-window:pass:weekly tuning"]
	not d.ticket
}

test_engineer_writes_setpoint_in_one_off_window if {
	d := interlock.decision with input as call(alice, write("ns=1;s=Setpoint", 55.0)) with time.now_ns as in_one_off
	d.allow
	d.reasons == ["maintenance-window:pass:CHG-0042 controller retune"]
}

test_one_off_window_opens_only_for_its_user if {
	erin := {"user": "erin", "auth": "username", "roles": [], "application_uri": known_app, "cert_thumbprint": "5d0b3c17a9e2f4c6b8d1e3f5a7c9b2d4e6f80a1c"}
	users := {"alice": {"roles": ["engineer"]}, "erin": {"roles": ["engineer"]}}
	d := interlock.decision with input as call(erin, write("ns=1;s=Setpoint", 55.0))
		with data.opcua.users as users
		with time.now_ns as in_one_off
	not d.allow
	d.reasons == ["maintenance-window:enforced:outside_maintenance_window:line1:write"]
}

test_engineer_write_outside_window_denied if {
	d := interlock.decision with input as call(alice, write("ns=1;s=Setpoint", 55.0)) with time.now_ns as outside
	not d.allow
	d.alert
	d.reasons == ["maintenance-window:enforced:outside_maintenance_window:line1:write"]
}

test_window_for_another_target_does_not_open if {
	c := object.union(call(alice, write("ns=1;s=Setpoint", 55.0)), {"target": {"name": "line2"}})
	d := interlock.decision with input as c with time.now_ns as in_weekly
	not d.allow
	d.reasons == ["maintenance-window:enforced:outside_maintenance_window:line2:write"]
}

test_ticket_stands_in_for_a_window if {
	d := interlock.decision with input as with_tickets(call(alice, write("ns=1;s=Setpoint", 55.0)), [ticket_t1])
		with time.now_ns as outside
	d.allow
	not d.alert
	d.reasons == ["change-ticket:pass:T-1"]
	d.ticket == "T-1"
}

test_ticket_of_another_user_does_not_match if {
	t := object.union(ticket_t1, {"user": "bob"})
	d := interlock.decision with input as with_tickets(call(alice, write("ns=1;s=Setpoint", 55.0)), [t])
		with time.now_ns as outside
	not d.allow
	not d.ticket
}

test_window_is_named_rather_than_ticket if {
	d := interlock.decision with input as with_tickets(call(alice, write("ns=1;s=Setpoint", 55.0)), [ticket_t1])
		with time.now_ns as in_weekly
	d.allow
	d.reasons == ["maintenance-window:pass:weekly tuning"]
	not d.ticket
}

test_engineer_may_not_write_other_nodes if {
	d := interlock.decision with input as call(alice, write("ns=1;s=Counter", 5)) with time.now_ns as in_weekly
	not d.allow
	d.reasons == ["maintenance-window:pass:weekly tuning", "opcua-setpoint:enforced:not_a_setpoint:ns=1;s=Counter"]
}

test_only_the_value_attribute_is_writable if {
	op := object.union(write("ns=1;s=Setpoint", "Hot"), {"attribute": "DisplayName"})
	d := interlock.decision with input as call(alice, op) with time.now_ns as in_weekly
	not d.allow
	"opcua-setpoint:enforced:attribute_not_writable:ns=1;s=Setpoint:DisplayName" in d.reasons
}

test_history_update_is_not_a_setpoint_write if {
	op := {"function": "history_update", "access": "write", "node_id": "ns=1;s=Setpoint"}
	d := interlock.decision with input as call(alice, op) with time.now_ns as in_weekly
	not d.allow
	d.reasons == ["maintenance-window:pass:weekly tuning", "opcua-setpoint:enforced:function_not_allowed:history_update"]
}

test_write_without_node_id_fails_closed if {
	op := {"function": "write", "access": "write"}
	d := interlock.decision with input as call(alice, op) with time.now_ns as in_weekly
	not d.allow
	"opcua-setpoint:enforced:not_a_setpoint:-" in d.reasons
}

# --- opcua-method and opcua-method-arguments ------------------------------------------------------

test_engineer_starts_within_limit if {
	q13 := interlock.decision with input as call(alice, start([500], ["Int32"]))
	allowed_quietly(q13)
	q14 := interlock.decision with input as call(alice, start([0], ["Int32"]))
	allowed_quietly(q14)
}

test_start_needs_no_window if {
	q15 := interlock.decision with input as call(alice, start([300], ["Int32"])) with time.now_ns as outside
	allowed_quietly(q15)
}

test_operator_may_not_start if {
	d := interlock.decision with input as call(bob, start([100], ["Int32"]))
	not d.allow
	d.alert
	d.reasons == ["opcua-method:enforced:role_required:engineer:bob:ns=1;s=Start"]
}

test_anonymous_may_not_start if {
	d := interlock.decision with input as call(anon, start([100], ["Int32"]))
	not d.allow
	d.reasons == ["opcua-method:enforced:role_required:engineer:-:ns=1;s=Start"]
}

test_speed_over_limit_denied if {
	d := interlock.decision with input as call(alice, start([501], ["Int32"]))
	not d.allow
	d.alert
	d.reasons == ["opcua-method-arguments:enforced:argument_out_of_range:ns=1;s=Start:speed=501:limit=0..500"]
}

test_negative_speed_denied if {
	d := interlock.decision with input as call(alice, start([-1], ["Int32"]))
	not d.allow
}

test_wrong_argument_type_denied if {
	d := interlock.decision with input as call(alice, start([100.5], ["Double"]))
	not d.allow
	d.reasons == ["opcua-method-arguments:enforced:argument_type:ns=1;s=Start:speed:want=Int32"]
	s := interlock.decision with input as call(alice, start(["100"], ["Int32"]))
	not s.allow
	s.reasons == ["opcua-method-arguments:enforced:argument_type:ns=1;s=Start:speed:want=Int32"]
}

test_wrong_argument_count_denied if {
	none := interlock.decision with input as call(alice, start([], []))
	not none.allow
	none.reasons == ["opcua-method-arguments:enforced:argument_count:ns=1;s=Start:0:want=1"]
	two := interlock.decision with input as call(alice, start([1, 2], ["Int32", "Int32"]))
	not two.allow
	two.reasons == ["opcua-method-arguments:enforced:argument_count:ns=1;s=Start:2:want=1"]
}

test_a_limit_that_is_not_a_number_fails_closed if {
	methods := [{"object_id": "ns=1;s=PLC", "method_id": "ns=1;s=Start", "roles": ["engineer"],
		"arguments": [{"name": "speed", "type": "Int32", "min": 0, "max": "500"}]}]
	d := interlock.decision with input as call(alice, start([100], ["Int32"])) with data.opcua.methods as methods
	not d.allow
}

test_unlisted_method_denied if {
	op := object.union(start([], []), {"method_id": "ns=1;s=Stop"})
	d := interlock.decision with input as call(alice, op)
	not d.allow
	d.reasons == ["opcua-method:enforced:method_not_allowed:ns=1;s=PLC:ns=1;s=Stop"]
}

test_method_on_another_object_denied if {
	op := object.union(start([100], ["Int32"]), {"object_id": "ns=1;s=Other"})
	d := interlock.decision with input as call(alice, op)
	not d.allow
	d.reasons == ["opcua-method:enforced:method_not_allowed:ns=1;s=Other:ns=1;s=Start"]
}

# --- known-application --------------------------------------------------------------------

test_write_from_unknown_application_alerts if {
	p := object.union(alice, {"application_uri": "urn:laptop:python-asyncua"})
	d := interlock.decision with input as call(p, write("ns=1;s=Setpoint", 55.0)) with time.now_ns as in_weekly
	d.allow
	d.alert
	d.reasons == [
		"known-application:monitor:unknown_application_uri:urn:laptop:python-asyncua",
		"maintenance-window:pass:weekly tuning",
	]
}

test_write_without_application_uri_alerts if {
	p := object.remove(alice, ["application_uri"])
	d := interlock.decision with input as call(p, write("ns=1;s=Setpoint", 55.0)) with time.now_ns as in_weekly
	d.allow
	d.alert
	"known-application:monitor:unknown_application_uri:-" in d.reasons
}

test_write_with_an_application_uri_no_certificate_proves_alerts if {
	p := object.remove(alice, ["cert_thumbprint"])
	d := interlock.decision with input as call(p, write("ns=1;s=Setpoint", 55.0)) with time.now_ns as in_weekly
	d.allow
	d.alert
	d.reasons == [
		"known-application:monitor:unverified_application_uri:urn:interlock:test:engineering-client",
		"maintenance-window:pass:weekly tuning",
	]
}

test_denied_write_from_unknown_application_still_alerts if {
	p := object.union(bob, {"application_uri": "urn:laptop:python-asyncua"})
	d := interlock.decision with input as call(p, write("ns=1;s=Setpoint", 55.0)) with time.now_ns as in_weekly
	not d.allow
	"known-application:monitor:unknown_application_uri:urn:laptop:python-asyncua" in d.reasons
}

test_write_from_known_application_does_not_alert if {
	d := interlock.decision with input as call(alice, write("ns=1;s=Setpoint", 55.0)) with time.now_ns as in_weekly
	not d.alert
}

test_reads_from_unknown_application_do_not_alert if {
	p := object.union(bob, {"application_uri": "urn:laptop:python-asyncua"})
	q16 := interlock.decision with input as call(p, read("ns=1;s=Setpoint"))
	allowed_quietly(q16)
	q17 := interlock.decision with input as call(object.union(alice, {"application_uri": "urn:x"}), start([1], ["Int32"]))
	allowed_quietly(q17)
}

# --- staging ------------------------------------------------------------------------------

test_staged_rule_only_alerts if {
	d := interlock.decision with input as call(alice, write("ns=1;s=Counter", 5))
		with time.now_ns as in_weekly
		with data.staging as ["opcua-setpoint"]
	d.allow
	d.alert
	d.reasons == ["maintenance-window:pass:weekly tuning", "opcua-setpoint:monitor:not_a_setpoint:ns=1;s=Counter"]
}

test_staging_one_rule_leaves_the_others_enforced if {
	d := interlock.decision with input as call(bob, write("ns=1;s=Counter", 5))
		with time.now_ns as in_weekly
		with data.staging as ["opcua-setpoint"]
	not d.allow
}

# --- the shipped data ------------------------------------------------------------------------

rule_ids := {
	"opcua-session", "opcua-access", "opcua-setpoint", "maintenance-window", "change-ticket",
	"opcua-method", "opcua-method-arguments", "known-application",
}

test_shipped_staging_names_only_rules_of_this_policy if {
	every id in data.staging {
		id in rule_ids
	}
}

test_every_reason_names_a_rule_of_this_policy if {
	inputs := [
		call(mallory, open_session),
		call(anon, browse),
		call(bob, write("ns=1;s=Counter", 5)),
		call(alice, start([900], ["Int32"])),
		call(object.union(alice, {"application_uri": "urn:x"}), write("ns=1;s=Setpoint", 1.0)),
	]
	every c in inputs {
		d := interlock.decision with input as c with time.now_ns as in_weekly
		every r in d.reasons {
			split(r, ":")[0] in rule_ids
		}
	}
}

test_window_for_every_target_and_caller if {
	windows := [{"name": "plant shutdown", "start": "2026-11-26T00:00:00Z", "end": "2026-11-27T00:00:00Z", "targets": ["*"]}]
	d := interlock.decision with input as call(alice, write("ns=1;s=Setpoint", 55.0))
		with data.opcua.maintenance_windows as windows
		with time.now_ns as outside
	d.allow
	d.reasons == ["maintenance-window:pass:plant shutdown"]
}

test_argument_specs_without_type_or_of_other_types if {
	methods := [{"object_id": "ns=1;s=PLC", "method_id": "ns=1;s=Start", "roles": ["engineer"],
		"arguments": [{"name": "speed", "min": 0, "max": 500}, {"name": "recipe", "type": "String"}]}]
	ok := interlock.decision with input as call(alice, start([100, "A1"], ["Double", "String"]))
		with data.opcua.methods as methods
	allowed_quietly(ok)
	bad := interlock.decision with input as call(alice, start([100, "A1"], ["Double", "Int32"]))
		with data.opcua.methods as methods
	not bad.allow
	bad.reasons == ["opcua-method-arguments:enforced:argument_type:ns=1;s=Start:recipe:want=String"]
}
