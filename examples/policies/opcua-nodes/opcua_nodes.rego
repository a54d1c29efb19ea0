# OPC UA node and method rules, per target.
#
# For each target (data.opcua_nodes.targets[<target name>]):
#
#   nodes    allow-list of node access: {access, [node_ids],
#            [node_id_prefixes], [browse_prefixes], [attributes], [users],
#            [roles]}. A call on a node (every access kind but session and
#            execute: read, write, subscribe, browse, ...) needs a rule that
#            lists its access kind, names its node (node_id exactly, a
#            node_id prefix, or a browse_path under a browse prefix: "/A/B"
#            covers "/A/B" and "/A/B/C", not "/A/BC") and, when the rule has
#            users or roles, is for the caller. attributes limits the
#            attributes (operation.attribute; "Value" when absent); without
#            it, a write may change only the Value attribute, and other
#            access kinds any attribute.
#   methods  allow-list of method calls (access "execute"): {object_id,
#            method_id, [users], [roles], [arguments]}. arguments describes
#            each input argument by position: {[type], [min], [max]}; a call
#            must pass exactly that many arguments (none when arguments is
#            absent), each of its type, numbers within min..max.
#
# users/roles: the rule is for principal.user in users or one of
# principal.roles in roles; with neither, for everyone.
#
# An argument in operation.arguments is either a plain JSON value or
# {"type": "<OPC UA built-in type>", "value": v}. A typed argument must carry
# the rule's type; a plain one must fit it (Boolean, String, the integer
# types within their bounds, Float and Double any number; other types are
# checked by name only, so a plain value passes).
#
# Calls of other protocols and session opens pass.
#
# Rules: opcua-node, opcua-method, opcua-method-arguments.
# Data: data.opcua_nodes (see README.md).
package interlock.opcua_nodes

# --- fast path ---------------------------------------------------------------
#
# Nearly every call is a node call the allow-list allows. Then no rule below
# is broken (the method rules are for execute calls only), and violations is
# empty without evaluating them: their negations and reason texts cost OPA
# steps on every call. Calls of other protocols break no rule either. The
# rules run only for a call that fails these tests; test_fast_path_* in the
# tests check that both give the same decision.
violations := set() if {
	# A node call the allow-list allows: node_call and node_allowed (below)
	# written out on input and data directly. The op, access, target and
	# attribute rules (defaults for reason texts) cost OPA a rule and a
	# builtin call each; a call that lacks a field this reads, or has no
	# listed target, is left to the rules.
	input.protocol == "opcua"
	o := input.operation
	o.access != "session"
	o.access != "execute"
	attr := object.get(o, "attribute", "Value")
	some rule in data.opcua_nodes.targets[input.target.name].nodes
	o.access in rule.access
	names_node(rule, o)
	attribute_ok(rule, o.access, attr)
	for_caller(rule)
} else := set() if {
	input.protocol != "opcua"
} else := findings

op := object.get(input, "operation", {})

access := object.get(op, "access", "")

target := object.get(input, ["target", "name"], "")

tcfg := data.opcua_nodes.targets[target]

node_call if {
	input.protocol == "opcua"
	not input.operation.access in {"session", "execute"}
}

method_call if {
	input.operation.access == "execute"
	input.protocol == "opcua"
}

# (roles first: rules for a role are more common than rules for a user)
for_caller(rule) if {
	not rule.roles
	not rule.users
}

for_caller(rule) if input.principal.user in rule.users

for_caller(rule) if {
	some r in input.principal.roles
	r in rule.roles
}

# --- opcua-node -----------------------------------------------------------------

attribute := object.get(op, "attribute", "Value")

# path lies under prefix, or is prefix (the common case first: OPA stops at
# the first body that holds).
under(path, prefix) if startswith(path, concat("", [trim_right(prefix, "/"), "/"]))

under(path, prefix) if path == trim_right(prefix, "/")

# Whether rule names the node of operation o.
names_node(rule, o) if o.node_id in rule.node_ids

names_node(rule, o) if {
	some p in rule.node_id_prefixes
	startswith(o.node_id, p)
}

names_node(rule, o) if {
	some p in rule.browse_prefixes
	under(o.browse_path, p)
}

# Whether rule allows attribute attr for access kind acc.
attribute_ok(rule, _, attr) if attr in rule.attributes

attribute_ok(rule, _, attr) if {
	not rule.attributes
	attr == "Value"
}

attribute_ok(rule, acc, _) if {
	not rule.attributes
	acc != "write"
}

node_allowed if {
	targets := data.opcua_nodes.targets
	some rule in targets[target].nodes
	access in rule.access
	names_node(rule, op)
	attribute_ok(rule, access, attribute)
	for_caller(rule)
}

node_name := object.get(op, "browse_path", object.get(op, "node_id", "-"))

findings contains {"id": "opcua-node", "reason": concat(":", ["node_not_allowed", access, node_name, attribute])} if {
	input.protocol == "opcua"
	node_call
	not node_allowed
}

# --- opcua-method ------------------------------------------------------------------

object_id := object.get(op, "object_id", "-")

method_id := object.get(op, "method_id", "-")

method_rules contains rule if {
	method_call
	some rule in tcfg.methods
	rule.object_id == object_id
	rule.method_id == method_id
	for_caller(rule)
}

findings contains {"id": "opcua-method", "reason": concat(":", ["method_not_allowed", object_id, method_id])} if {
	input.operation.access == "execute"
	method_call
	count(method_rules) == 0
}

# --- opcua-method-arguments --------------------------------------------------------

arguments := object.get(op, "arguments", [])

typed(a) if {
	is_object(a)
	"value" in object.keys(a)
}

arg_value(a) := a.value if typed(a)

arg_value(a) := a if not typed(a)

integer_bounds := {
	"SByte": [-128, 127],
	"Byte": [0, 255],
	"Int16": [-32768, 32767],
	"UInt16": [0, 65535],
	"Int32": [-2147483648, 2147483647],
	"UInt32": [0, 4294967295],
	"Int64": [-9223372036854775808, 9223372036854775807],
	"UInt64": [0, 18446744073709551615],
}

fits(t, v) if {
	b := integer_bounds[t]
	is_number(v)
	v == round(v)
	b[0] <= v
	v <= b[1]
}

fits(t, v) if {
	t in {"Float", "Double"}
	is_number(v)
}

fits("String", v) if is_string(v)

fits("Boolean", v) if is_boolean(v)

fits(t, _) if not checked_type(t)

checked_type(t) if integer_bounds[t]

checked_type(t) if t in {"Float", "Double", "String", "Boolean"}

type_ok(spec, _) if not spec.type

type_ok(spec, a) if {
	not typed(a)
	fits(spec.type, a)
}

type_ok(spec, a) if {
	typed(a)
	a.type == spec.type
	fits(spec.type, a.value)
}

# What is wrong with the call's arguments under one method rule.
argument_problems(rule) := problems if {
	specs := object.get(rule, "arguments", [])
	wrong_count := {p |
		count(arguments) != count(specs)
		p := sprintf("argument_count:%s:%d:want=%d", [method_id, count(arguments), count(specs)])
	}
	wrong_type := {p |
		some i, spec in specs
		a := arguments[i]
		not type_ok(spec, a)
		p := sprintf("argument_type:%s:%d:want=%s", [method_id, i, spec.type])
	}
	out_of_range := {p |
		some i, spec in specs
		a := arguments[i]
		type_ok(spec, a) # a value of the wrong type is reported as such
		v := arg_value(a)
		is_number(v)
		out_of_limits(spec, v)
		p := sprintf("argument_out_of_range:%s:%d=%v:limit=%v..%v", [method_id, i, v, object.get(spec, "min", ""), object.get(spec, "max", "")])
	}
	problems := (wrong_count | wrong_type) | out_of_range
}

out_of_limits(spec, v) if v < spec.min

out_of_limits(spec, v) if v > spec.max

# A limit that is not a number denies: a typo in data fails closed.
out_of_limits(spec, _) if {
	some k in ["min", "max"]
	k in object.keys(spec)
	not is_number(spec[k])
}

method_allowed if {
	some rule in method_rules
	count(argument_problems(rule)) == 0
}

# No rule accepts the arguments: the problems under every rule for the caller.
findings contains {"id": "opcua-method-arguments", "reason": p} if {
	input.operation.access == "execute"
	count(method_rules) > 0
	not method_allowed
	some rule in method_rules
	some p in argument_problems(rule)
}

passes := set()
