# OPC UA example policy for the listener line1 (interlock sim opcua, or any
# server with the PLC nodes): who may open a session, read, change
# setpoints and start the drive.
#
#   opcua-session        a session opens for a user listed in data.opcua.users
#                        (UserName or X.509 login; with password pass-through
#                        the upstream checks the password, this rule the
#                        name), and for anonymous clients only while
#                        data.opcua.anonymous.allowed is true
#   opcua-access         every other call needs its access kind granted:
#                        anonymous: data.opcua.anonymous.access (read);
#                        a listed user: data.opcua.authenticated_access
#                        (browse, subscribe) and the access of each of the
#                        user's roles in data.opcua.role_access (operator:
#                        read; engineer: read, write). execute is governed
#                        by opcua-method instead.
#   opcua-setpoint       a write changes the Value attribute of a node listed
#                        in data.opcua.setpoints, with the Write service
#   maintenance-window   a write needs a window of
#                        data.opcua.maintenance_windows open for the target
#                        and the caller, or an open change ticket for the
#                        caller, the target and write (`interlock ticket
#                        open`; the decision names it)
#   opcua-method         a call names a method of data.opcua.methods, and the
#                        caller has one of its roles
#   opcua-method-arguments  the call's arguments fit the method's: as many,
#                        each of its type, numbers within min..max (Start:
#                        speed 0..500)
#   known-application    any write from a client whose ApplicationURI is not
#                        in data.opcua.known_applications raises an alert
#                        (monitor-only: it never blocks by itself)
#
# Roles come from data.opcua.users (user -> roles), so they work with
# password pass-through where the gateway has no users file; roles the
# gateway gives in principal.roles count too.
#
# Decision, as in the policy library (examples/policies/README.md):
# {"allow", "alert", "reasons", ["ticket"]}, reasons
# "<rule-id>:enforced|monitor|pass:<reason>", sorted; data.staging lists
# rule ids that only alert.
package interlock

cfg := data.opcua

op := object.get(input, "operation", {})

access := object.get(op, "access", "")

function := object.get(op, "function", "")

target := object.get(input, ["target", "name"], "")

user := object.get(input, ["principal", "user"], "")

# The user in reason texts.
default user_name := "-"

user_name := user if user != ""

anonymous if input.principal.auth == "anonymous"

# A listed user who logged in with a UserName or X.509 token.
known_user if {
	not anonymous
	cfg.users[input.principal.user]
}

roles contains r if {
	known_user
	some r in cfg.users[input.principal.user].roles
}

roles contains r if {
	known_user
	some r in input.principal.roles
}

# --- opcua-session ------------------------------------------------------------------

violations contains {"id": "opcua-session", "reason": "anonymous_not_allowed"} if {
	access == "session"
	anonymous
	not cfg.anonymous.allowed == true
}

violations contains {"id": "opcua-session", "reason": concat(":", ["unknown_user", user_name])} if {
	access == "session"
	not anonymous
	not known_user
}

# --- opcua-access -------------------------------------------------------------------

granted contains a if {
	anonymous
	cfg.anonymous.allowed == true
	some a in cfg.anonymous.access
}

granted contains a if {
	known_user
	some a in cfg.authenticated_access
}

granted contains a if {
	known_user
	some r in roles
	some a in cfg.role_access[r]
}

violations contains {"id": "opcua-access", "reason": concat(":", ["access_not_granted", user_name, access])} if {
	not access in {"session", "execute"}
	not access in granted
}

# --- opcua-setpoint -----------------------------------------------------------------

node_id := object.get(op, "node_id", "-")

attribute := object.get(op, "attribute", "Value")

violations contains {"id": "opcua-setpoint", "reason": concat(":", ["function_not_allowed", function])} if {
	access == "write"
	function != "write"
}

violations contains {"id": "opcua-setpoint", "reason": concat(":", ["not_a_setpoint", node_id])} if {
	access == "write"
	not node_id in cfg.setpoints
}

violations contains {"id": "opcua-setpoint", "reason": concat(":", ["attribute_not_writable", node_id, attribute])} if {
	access == "write"
	attribute != "Value"
}

# --- maintenance-window -------------------------------------------------------------

listed(xs, x) if x in xs

listed(xs, _) if "*" in xs

for_caller(w) if {
	not w.users
	not w.roles
}

for_caller(w) if user in w.users

for_caller(w) if {
	some r in roles
	r in w.roles
}

# The cheap scope checks first: the builtin is asked only about windows that
# could open for this call.
open_windows contains object.get(w, "name", "unnamed") if {
	access == "write"
	some w in cfg.maintenance_windows
	listed(w.targets, target)
	for_caller(w)
	interlock.window_open(w, time.now_ns())
}

open_tickets contains t.id if {
	access == "write"
	count(open_windows) == 0
	some t in input.tickets
	t.user == input.principal.user
	target in t.targets
	access in t.access
}

violations contains {"id": "maintenance-window", "reason": concat(":", ["outside_maintenance_window", target, access])} if {
	access == "write"
	count(open_windows) == 0
	count(open_tickets) == 0
}

passes contains {"id": "maintenance-window", "reason": name} if some name in open_windows

passes contains {"id": "change-ticket", "reason": min(open_tickets)} if count(open_tickets) > 0

tickets := {min(open_tickets) | count(open_tickets) > 0}

# --- opcua-method, opcua-method-arguments ---------------------------------------------

object_id := object.get(op, "object_id", "-")

method_id := object.get(op, "method_id", "-")

method_listed contains m if {
	access == "execute"
	some m in cfg.methods
	m.object_id == object_id
	m.method_id == method_id
}

method_rules contains m if {
	some m in method_listed
	some r in roles
	r in m.roles
}

violations contains {"id": "opcua-method", "reason": concat(":", ["method_not_allowed", object_id, method_id])} if {
	access == "execute"
	count(method_listed) == 0
}

violations contains {"id": "opcua-method", "reason": concat(":", ["role_required", concat(",", sort(m.roles)), user_name, method_id])} if {
	some m in method_listed
	count(method_rules) == 0
}

arguments := object.get(op, "arguments", [])

argument_types := object.get(op, "argument_types", [])

# What is wrong with the call's arguments under one method entry.
argument_problems(m) := problems if {
	specs := object.get(m, "arguments", [])
	wrong_count := {p |
		count(arguments) != count(specs)
		p := sprintf("argument_count:%s:%d:want=%d", [method_id, count(arguments), count(specs)])
	}
	wrong_type := {p |
		some i, spec in specs
		i < count(arguments)
		not type_ok(spec, i)
		p := sprintf("argument_type:%s:%s:want=%s", [method_id, arg_name(spec, i), spec.type])
	}
	out_of_range := {p |
		some i, spec in specs
		v := arguments[i]
		type_ok(spec, i) # a value of the wrong type is reported as such
		out_of_limits(spec, v)
		p := sprintf("argument_out_of_range:%s:%s=%v:limit=%v..%v", [method_id, arg_name(spec, i), v, object.get(spec, "min", ""), object.get(spec, "max", "")])
	}
	problems := (wrong_count | wrong_type) | out_of_range
}

arg_name(spec, i) := object.get(spec, "name", sprintf("%d", [i]))

# The gateway gives each argument's built-in type in argument_types; a
# typed argument must be a number when the method wants one.
type_ok(spec, _) if not spec.type

type_ok(spec, i) if {
	argument_types[i] == spec.type
	number_ok(spec, arguments[i])
}

number_ok(_, v) if is_number(v)

number_ok(spec, _) if not numeric_types[spec.type]

numeric_types := {"SByte", "Byte", "Int16", "UInt16", "Int32", "UInt32", "Int64", "UInt64", "Float", "Double"}

out_of_limits(spec, v) if v < spec.min

out_of_limits(spec, v) if v > spec.max

# A limit that is not a number denies: a typo in data fails closed.
out_of_limits(spec, _) if {
	some k in ["min", "max"]
	k in object.keys(spec)
	not is_number(spec[k])
}

method_allowed if {
	some m in method_rules
	count(argument_problems(m)) == 0
}

violations contains {"id": "opcua-method-arguments", "reason": p} if {
	count(method_rules) > 0
	not method_allowed
	some m in method_rules
	some p in argument_problems(m)
}

# --- known-application ----------------------------------------------------------------

application_uri := object.get(input, ["principal", "application_uri"], "")

# The ApplicationURI is the application's own only when its certificate
# proves it (the gateway checks the certificate's URI against it, and names
# the certificate by cert_thumbprint); on a channel without a client
# certificate (SecurityPolicy None) it is what the client claims.
application_verified if object.get(input, ["principal", "cert_thumbprint"], "") != ""

default application_name := "-"

application_name := application_uri if application_uri != ""

violations contains {"id": "known-application", "reason": concat(":", ["unknown_application_uri", application_name]), "monitor": true} if {
	access == "write"
	application_verified
	not application_uri in cfg.known_applications
}

violations contains {"id": "known-application", "reason": concat(":", ["unverified_application_uri", application_name]), "monitor": true} if {
	access == "write"
	not application_verified
}

# --- template (examples/policies/README.md) --------------------------------------------

# interlock.decision, the gateway's builtin, makes the decision of the
# library's convention (examples/policies/README.md, "The decision") from the modules'
# violations, passes and tickets in one step; data.staging names the rule ids
# that are monitor-only. It gives what the template's rules gave before it
# (examples/policies/policies_test.go keeps them as the reference). The
# first way is the common call, which breaks no rule and passes on nothing:
# it costs two steps, where the builtin would look up the tickets and the
# staging list. (passes first: a call a ticket or window allowed stops there.)
decision := {"allow": true, "alert": false, "reasons": []} if {
	count(passes) == 0
	count(violations) == 0
} else := interlock.decision(violations, passes, tickets, data.staging) if {
	data.staging
} else := interlock.decision(violations, passes, tickets, [])
