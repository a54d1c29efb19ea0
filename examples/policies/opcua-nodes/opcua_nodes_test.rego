package interlock.opcua_nodes_test

import data.interlock

# --- fixtures ----------------------------------------------------------------

alice := {"user": "alice", "auth": "username", "roles": ["engineer"]}

bob := {"user": "bob", "auth": "username", "roles": ["engineer"]}

olga := {"user": "olga", "auth": "x509", "roles": ["operator"]}

anon := {"auth": "anonymous", "roles": []}

cfg := {"targets": {"line1": {
	"nodes": [
		{"access": ["browse"], "browse_prefixes": ["/Objects"]},
		{"access": ["read", "subscribe"], "browse_prefixes": ["/Objects/Line1/Status/"], "node_id_prefixes": ["ns=2;s=Line1.Status."]},
		{"access": ["read"], "node_ids": ["i=2256"]},
		{"access": ["read", "write"], "browse_prefixes": ["/Objects/Line1/Setpoints"], "roles": ["engineer"]},
		{"access": ["write"], "node_ids": ["ns=2;s=Line1.Recipe.Name"], "attributes": ["Value", "Description"], "users": ["alice"]},
	],
	"methods": [
		{
			"object_id": "ns=2;s=Dosing", "method_id": "ns=2;s=Dosing.Start", "roles": ["operator", "engineer"],
			"arguments": [{"type": "Double", "min": 0, "max": 50}, {"type": "UInt32", "min": 1, "max": 3600}],
		},
		{"object_id": "ns=2;s=Dosing", "method_id": "ns=2;s=Dosing.Stop", "roles": ["operator", "engineer"]},
		{
			"object_id": "ns=2;s=Recipes", "method_id": "ns=2;s=Recipes.Load", "roles": ["engineer"],
			"arguments": [{"type": "String"}, {"type": "UInt16", "min": 1}, {"type": "Boolean"}, {"type": "NodeId"}],
		},
	],
}}}

call(principal, op) := {
	"protocol": "opcua",
	"session": {"id": "s1", "security_policy": "Basic256Sha256", "security_mode": "SignAndEncrypt"},
	"principal": principal,
	"source": {"ip": "10.0.5.7", "port": 50123},
	"target": {"name": "line1", "upstream": "opc.tcp://10.0.0.20:4840"},
	"operation": op,
	"tickets": [],
}

decide(principal, op) := d if {
	d := interlock.decision with input as call(principal, op) with data.opcua_nodes as cfg
}

allowed(principal, op) if decide(principal, op).allow

node(access, node_id, path) := {"function": access, "access": access, "node_id": node_id, "browse_path": path, "attribute": "Value"}

read(path) := node("read", "ns=2;s=X", path)

write(path) := node("write", "ns=2;s=X", path)

method(object_id, method_id, args) := {
	"function": "call", "access": "execute",
	"object_id": object_id, "method_id": method_id, "arguments": args,
}

start(args) := method("ns=2;s=Dosing", "ns=2;s=Dosing.Start", args)

load(args) := method("ns=2;s=Recipes", "ns=2;s=Recipes.Load", args)

# --- node rules ----------------------------------------------------------------------

test_read_under_a_browse_prefix if {
	d := decide(olga, read("/Objects/Line1/Status/Temperature"))
	d.allow
	not d.alert
	d.reasons == []
	allowed(olga, read("/Objects/Line1/Status")) # the prefix node itself
}

test_browse_prefix_matches_whole_segments if {
	d := decide(olga, read("/Objects/Line1/StatusHistory"))
	not d.allow
	d.reasons == ["opcua-node:enforced:node_not_allowed:read:/Objects/Line1/StatusHistory:Value"]
}

test_read_by_node_id if {
	allowed(olga, node("read", "i=2256", "/Objects/Server/ServerStatus"))
	not allowed(olga, node("read", "i=2255", "/Objects/Server/NamespaceArray"))
	allowed(olga, {"function": "read", "access": "read", "node_id": "ns=2;s=Line1.Status.Pressure"})
	not allowed(olga, {"function": "read", "access": "read", "node_id": "ns=2;s=Line1.Secret"})
}

test_node_without_id_or_path_denied if {
	d := decide(olga, {"function": "read", "access": "read"})
	d.reasons == ["opcua-node:enforced:node_not_allowed:read:-:Value"]
}

test_subscribe_and_browse if {
	allowed(olga, node("subscribe", "ns=2;s=X", "/Objects/Line1/Status/Temperature"))
	not allowed(olga, node("subscribe", "ns=2;s=X", "/Objects/Line1/Setpoints/Temperature"))
	allowed(anon, node("browse", "i=85", "/Objects"))
	allowed(anon, node("browse", "ns=2;s=X", "/Objects/Line1/Setpoints"))
	not allowed(anon, node("browse", "i=86", "/Types"))
}

test_write_needs_a_write_rule_for_the_caller if {
	allowed(alice, write("/Objects/Line1/Setpoints/Temperature"))
	allowed(bob, write("/Objects/Line1/Setpoints/Temperature"))
	d := decide(olga, write("/Objects/Line1/Setpoints/Temperature"))
	not d.allow
	d.reasons == ["opcua-node:enforced:node_not_allowed:write:/Objects/Line1/Setpoints/Temperature:Value"]
	not allowed(alice, write("/Objects/Line1/Status/Temperature")) # readable, not writable
}

test_write_changes_only_the_value_attribute_by_default if {
	other := object.union(write("/Objects/Line1/Setpoints/Temperature"), {"attribute": "DisplayName"})
	d := decide(alice, other)
	d.reasons == ["opcua-node:enforced:node_not_allowed:write:/Objects/Line1/Setpoints/Temperature:DisplayName"]
	allowed(alice, object.union(other, {"access": "read", "function": "read"})) # reading it is fine
	allowed(alice, object.remove(write("/Objects/Line1/Setpoints/Temperature"), ["attribute"])) # absent: Value
}

test_attribute_list if {
	name := {"function": "write", "access": "write", "node_id": "ns=2;s=Line1.Recipe.Name"}
	allowed(alice, object.union(name, {"attribute": "Value"}))
	allowed(alice, object.union(name, {"attribute": "Description"}))
	not allowed(alice, object.union(name, {"attribute": "AccessLevel"}))
	not allowed(bob, object.union(name, {"attribute": "Value"})) # the rule is for alice only
}

test_target_not_listed_denied if {
	c := object.union(call(alice, read("/Objects/Line1/Status/X")), {"target": {"name": "line2"}})
	not interlock.decision.allow with input as c with data.opcua_nodes as cfg
}

test_session_open_and_other_protocols_pass if {
	allowed(anon, {"function": "session.open", "access": "session"})
	modbus := object.union(call(alice, {"function": "write_single_register", "code": 6, "access": "write", "address": 1, "values": [1]}), {"protocol": "modbus"})
	interlock.decision.allow with input as modbus with data.opcua_nodes as cfg
}

# --- method rules ----------------------------------------------------------------------

test_method_with_good_arguments if {
	d := decide(olga, start([12.5, 600]))
	d.allow
	not d.alert
	allowed(olga, start([{"type": "Double", "value": 12.5}, {"type": "UInt32", "value": 600}]))
	allowed(olga, start([0, 1])) # limits are inclusive
	allowed(olga, start([50, 3600]))
}

test_method_not_listed_denied if {
	d := decide(alice, method("ns=2;s=Dosing", "ns=2;s=Dosing.Purge", []))
	not d.allow
	d.reasons == ["opcua-method:enforced:method_not_allowed:ns=2;s=Dosing:ns=2;s=Dosing.Purge"]
}

test_method_on_another_object_denied if {
	d := decide(alice, method("ns=2;s=OtherDosing", "ns=2;s=Dosing.Start", [1, 1]))
	d.reasons == ["opcua-method:enforced:method_not_allowed:ns=2;s=OtherDosing:ns=2;s=Dosing.Start"]
}

test_method_for_other_roles_denied if {
	d := decide(olga, load(["r1", 1, true, "ns=2;i=7"]))
	d.reasons == ["opcua-method:enforced:method_not_allowed:ns=2;s=Recipes:ns=2;s=Recipes.Load"]
	allowed(alice, load(["r1", 1, true, "ns=2;i=7"]))
}

test_argument_count if {
	d := decide(olga, start([12.5]))
	not d.allow
	d.reasons == ["opcua-method-arguments:enforced:argument_count:ns=2;s=Dosing.Start:1:want=2"]
	d2 := decide(olga, start([12.5, 600, 1]))
	d2.reasons == ["opcua-method-arguments:enforced:argument_count:ns=2;s=Dosing.Start:3:want=2"]
}

test_method_without_arguments if {
	allowed(olga, method("ns=2;s=Dosing", "ns=2;s=Dosing.Stop", []))
	allowed(olga, object.remove(method("ns=2;s=Dosing", "ns=2;s=Dosing.Stop", []), ["arguments"]))
	d := decide(olga, method("ns=2;s=Dosing", "ns=2;s=Dosing.Stop", [1]))
	d.reasons == ["opcua-method-arguments:enforced:argument_count:ns=2;s=Dosing.Stop:1:want=0"]
}

test_argument_types if {
	d := decide(olga, start(["12.5", 600]))
	d.reasons == ["opcua-method-arguments:enforced:argument_type:ns=2;s=Dosing.Start:0:want=Double"]
	typed := decide(olga, start([{"type": "Float", "value": 12.5}, 600]))
	typed.reasons == ["opcua-method-arguments:enforced:argument_type:ns=2;s=Dosing.Start:0:want=Double"]
	fraction := decide(olga, start([12.5, 1.5]))
	fraction.reasons == ["opcua-method-arguments:enforced:argument_type:ns=2;s=Dosing.Start:1:want=UInt32"]
	negative := decide(olga, start([12.5, -1]))
	negative.reasons == ["opcua-method-arguments:enforced:argument_type:ns=2;s=Dosing.Start:1:want=UInt32"]
	too_big := decide(olga, start([12.5, 4294967296]))
	too_big.reasons == ["opcua-method-arguments:enforced:argument_type:ns=2;s=Dosing.Start:1:want=UInt32"]
}

test_string_boolean_and_other_types if {
	allowed(alice, load(["r1", 2, false, {"type": "NodeId", "value": "ns=2;i=7"}]))
	d := decide(alice, load([7, 2, "yes", {"type": "String", "value": "ns=2;i=7"}]))
	d.reasons == [
		"opcua-method-arguments:enforced:argument_type:ns=2;s=Recipes.Load:0:want=String",
		"opcua-method-arguments:enforced:argument_type:ns=2;s=Recipes.Load:2:want=Boolean",
		"opcua-method-arguments:enforced:argument_type:ns=2;s=Recipes.Load:3:want=NodeId",
	]
}

test_argument_limits if {
	d := decide(olga, start([50.01, 600]))
	d.reasons == ["opcua-method-arguments:enforced:argument_out_of_range:ns=2;s=Dosing.Start:0=50.01:limit=0..50"]
	d2 := decide(olga, start([{"type": "Double", "value": -1}, 0]))
	d2.reasons == [
		"opcua-method-arguments:enforced:argument_out_of_range:ns=2;s=Dosing.Start:0=-1:limit=0..50",
		"opcua-method-arguments:enforced:argument_out_of_range:ns=2;s=Dosing.Start:1=0:limit=1..3600",
	]
	d3 := decide(alice, load(["r1", 0, true, "ns=2;i=7"]))
	d3.reasons == ["opcua-method-arguments:enforced:argument_out_of_range:ns=2;s=Recipes.Load:1=0:limit=1.."]
}

test_rules_per_role_with_different_limits if {
	rules := {"targets": {"line1": {"methods": [
		{"object_id": "o", "method_id": "m", "roles": ["operator"], "arguments": [{"type": "Double", "max": 10}]},
		{"object_id": "o", "method_id": "m", "roles": ["engineer"], "arguments": [{"type": "Double", "max": 100}]},
	]}}}
	interlock.decision.allow with input as call(alice, method("o", "m", [50])) with data.opcua_nodes as rules
	d := interlock.decision with input as call(olga, method("o", "m", [50])) with data.opcua_nodes as rules
	d.reasons == ["opcua-method-arguments:enforced:argument_out_of_range:m:0=50:limit=..10"]
	both := {"user": "carl", "roles": ["operator", "engineer"]}
	interlock.decision.allow with input as call(both, method("o", "m", [50])) with data.opcua_nodes as rules
	d2 := interlock.decision with input as call(both, method("o", "m", [500])) with data.opcua_nodes as rules
	d2.reasons == [
		"opcua-method-arguments:enforced:argument_out_of_range:m:0=500:limit=..10",
		"opcua-method-arguments:enforced:argument_out_of_range:m:0=500:limit=..100",
	]
}

test_limit_that_is_not_a_number_denies if {
	rules := {"targets": {"line1": {"methods": [{"object_id": "o", "method_id": "m", "arguments": [{"max": "10"}]}]}}}
	not interlock.decision.allow with input as call(alice, method("o", "m", [5])) with data.opcua_nodes as rules
}

# --- staging -----------------------------------------------------------------------------

test_staged_argument_rule_alerts_while_method_rule_blocks if {
	d := decide(olga, start([75, 600])) with data.staging as ["opcua-method-arguments"]
	d.allow
	d.alert
	d.reasons == ["opcua-method-arguments:monitor:argument_out_of_range:ns=2;s=Dosing.Start:0=75:limit=0..50"]
	not allowed(olga, method("ns=2;s=Dosing", "ns=2;s=Dosing.Purge", [])) with data.staging as ["opcua-method-arguments"]
}

# --- the shipped data.yaml -----------------------------------------------------------------

test_shipped_data if {
	interlock.decision.allow with input as call(olga, read("/Objects/Line1/Status/Temperature"))
	interlock.decision.allow with input as call(alice, write("/Objects/Line1/Setpoints/Temperature"))
	not interlock.decision.allow with input as call(olga, write("/Objects/Line1/Setpoints/Temperature"))
	dosing := method("ns=2;s=Line1.Dosing", "ns=2;s=Line1.Dosing.Start", [{"type": "Double", "value": 20}, 300])
	interlock.decision.allow with input as call(olga, dosing)
	too_much := method("ns=2;s=Line1.Dosing", "ns=2;s=Line1.Dosing.Start", [80, 300])
	not interlock.decision.allow with input as call(olga, too_much)
}

# --- the fast path -----------------------------------------------------------------
#
# violations is empty without evaluating the rules for calls of other
# protocols and for node calls the allow-list allows (opcua_nodes.rego, "fast
# path"); otherwise it is what the rules find. Either way it must be what the
# rules alone find.

fast_path_calls := [
	call(olga, read("/Objects/Line1/Status/Temperature")),
	call(olga, node("read", "ns=2;s=Line1.Status.Pressure", "/X")),
	call(olga, node("read", "i=2256", "/Objects/Server/ServerStatus")),
	call(olga, node("subscribe", "ns=2;s=X", "/Objects/Line1/Status/Level")),
	call(anon, node("browse", "ns=2;s=X", "/Objects/Line1")),
	call(alice, write("/Objects/Line1/Setpoints/Temperature")),
	call(alice, node("write", "ns=2;s=Line1.Recipe.Name", "/Objects/Line1/Recipe/Name")),
	object.union(call(olga, node("read", "ns=2;s=X", "/Objects/Line1/Status/T")), {"protocol": "modbus"}),
	call(olga, write("/Objects/Line1/Setpoints/Temperature")),
	call(olga, read("/Objects/Line1/Other")),
	call(olga, read("/Objects/Line1/StatusX")),
	call(alice, object.union(write("/Objects/Line1/Setpoints/Temperature"), {"attribute": "Description"})),
	call(bob, node("write", "ns=2;s=Line1.Recipe.Name", "/Objects/Line1/Recipe/Name")),
	call(olga, {"function": "read", "access": "read"}),
	call(olga, start([75, 600])),
	call(olga, start([12.5])),
	call(alice, load(["r", 0, true, "ns=1;i=5"])),
	call(olga, start([12.5, 600])),
	call(olga, method("ns=2;s=Dosing", "ns=2;s=Nope", [])),
	call(olga, {"function": "session.open", "access": "session"}),
	object.union(call(olga, read("/Objects/Line1/Other")), {"target": {"name": "line9"}}),
	call(olga, {"function": "read", "node_id": "ns=2;s=Line1.Status.Pressure"}),
]

test_fast_path_gives_what_the_rules_find if {
	every c in fast_path_calls {
		fast := interlock.opcua_nodes.violations with input as c with data.opcua_nodes as cfg
		rules := interlock.opcua_nodes.findings with input as c with data.opcua_nodes as cfg
		fast == rules
	}
}

test_fast_path_taken_by_allowed_node_calls if {
	every c in array.slice(fast_path_calls, 0, 8) {
		count(interlock.opcua_nodes.findings) == 0 with input as c with data.opcua_nodes as cfg
	}
	every c in array.slice(fast_path_calls, 8, 17) {
		count(interlock.opcua_nodes.violations) > 0 with input as c with data.opcua_nodes as cfg
	}
}

# The fast path writes node_call and node_allowed out on input and data
# directly (without the defaulted op, access, target and attribute rules):
# for each of these calls it must give an empty violations exactly when
# node_call and node_allowed hold, and otherwise what the rules find.
written_out_calls := [
	call(olga, object.remove(read("/Objects/Line1/Status/T"), ["attribute"])),
	call(alice, object.remove(write("/Objects/Line1/Setpoints/T"), ["attribute"])),
	call(alice, object.union(write("/Objects/Line1/Setpoints/T"), {"attribute": "Description"})),
	call(alice, node("write", "ns=2;s=Line1.Recipe.Name", "/Objects/Line1/Recipe/Name")),
	call(alice, object.union(node("write", "ns=2;s=Line1.Recipe.Name", "/X"), {"attribute": "Description"})),
	call(alice, object.union(node("write", "ns=2;s=Line1.Recipe.Name", "/X"), {"attribute": "DisplayName"})),
	call(olga, node("read", "ns=2;s=Line1.Status.Level", "/Elsewhere")),
	call(olga, object.remove(node("read", "ns=2;s=Line1.Status.Level", "/X"), ["browse_path"])),
	call(olga, object.remove(node("read", "i=2256", "/X"), ["node_id"])),
	call(olga, object.remove(read("/Objects/Line1/Status/T"), ["access"])),
	call(olga, node("session", "ns=2;s=X", "/Objects/Line1/Status/T")),
	call(olga, node("execute", "ns=2;s=X", "/Objects/Line1/Status/T")),
	call(olga, node("history", "ns=2;s=X", "/Objects/Line1/Status/T")),
	call(anon, node("browse", "ns=2;s=X", "/Objects")),
	call(anon, node("browse", "ns=2;s=X", "/Objectsss")),
	object.remove(call(olga, read("/Objects/Line1/Status/T")), ["target"]),
	object.union(call(olga, read("/Objects/Line1/Status/T")), {"target": {"name": "line2"}}),
	object.remove(call(olga, read("/Objects/Line1/Status/T")), ["protocol"]),
	object.union(call(olga, read("/Objects/Line1/Status/T")), {"protocol": "modbus"}),
	call(object.remove(alice, ["roles"]), write("/Objects/Line1/Setpoints/T")),
	call(object.remove(olga, ["user"]), read("/Objects/Line1/Status/T")),
]

test_fast_path_written_out if {
	every c in array.concat(fast_path_calls, written_out_calls) {
		fast := interlock.opcua_nodes.violations with input as c with data.opcua_nodes as cfg
		rules := interlock.opcua_nodes.findings with input as c with data.opcua_nodes as cfg
		fast == rules
		empty_if_node_allowed(c, fast)
	}
	count([c | some c in written_out_calls; node_call_allowed(c)]) == 8
}

empty_if_node_allowed(c, fast) if {
	node_call_allowed(c)
	fast == set()
}

empty_if_node_allowed(c, _) if not node_call_allowed(c)

node_call_allowed(c) if {
	interlock.opcua_nodes.node_call with input as c with data.opcua_nodes as cfg
	interlock.opcua_nodes.node_allowed with input as c with data.opcua_nodes as cfg
}
