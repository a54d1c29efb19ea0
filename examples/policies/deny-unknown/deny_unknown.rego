# Unknown and vendor function codes, diagnostics and CANopen on Modbus.
#
#   unknown-function  a function code the gateway has no layout for
#                     (operation.function "unknown", access "program":
#                     vendor codes such as 0x5A, user-defined 65-72 and
#                     100-110, a MEI type other than 13 and 14) is denied
#                     unless the target's vendor allow-list names its code
#   diagnostics       FC 8 is denied except for the sub-functions in
#                     allowed_diagnostics (default: return_query_data, the
#                     loopback); the others restart the device's
#                     communications, force it to listen only, clear its
#                     counters, ...
#   canopen           FC 43 / MEI 13 (CANopen general reference) is denied
#                     unless the target's vendor allow-list names code 43
#                     with mei_type 13
#
# A vendor allow-list entry (data.deny_unknown.vendor_codes[<target>]) is
# {code, name, [mei_type], [users], [roles]}: users/roles limit it to those
# callers (with neither, anyone). The decision names the entry that let a
# call through ("unknown-function:pass:vendor_code:<code>:<name>").
#
# Everything else passes this module, including other protocols.
#
# Rules: unknown-function, diagnostics, canopen.
# Data: data.deny_unknown (see README.md).
package interlock.deny_unknown

op := object.get(input, "operation", {})

function := object.get(op, "function", "")

code := object.get(op, "code", -1)

target := object.get(input, ["target", "name"], "")

modbus if input.protocol == "modbus"

default allowed_diagnostics := {"return_query_data"}

allowed_diagnostics := {s | some s in data.deny_unknown.allowed_diagnostics} if data.deny_unknown.allowed_diagnostics

for_caller(e) if {
	not e.users
	not e.roles
}

for_caller(e) if input.principal.user in e.users

for_caller(e) if {
	some r in input.principal.roles
	r in e.roles
}

mei_ok(e) if not "mei_type" in object.keys(e)

mei_ok(e) if e.mei_type == op.mei_type

vendor_entries contains e if {
	input.operation.access == "program"
	modbus
	some e in data.deny_unknown.vendor_codes[target]
	e.code == code
	mei_ok(e)
	for_caller(e)
}

vendor_allowed if count(vendor_entries) > 0

# Any program access but CANopen (which has its own rule) is an unknown code.
violations contains {"id": "unknown-function", "reason": sprintf("unknown_function:%v", [code])} if {
	input.operation.access == "program"
	modbus
	function != "canopen_general_reference"
	not vendor_allowed
}

violations contains {"id": "diagnostics", "reason": concat(":", ["diagnostics_denied", sub_function])} if {
	input.operation.function == "diagnostics"
	modbus
	not sub_function in allowed_diagnostics
}

sub_function := object.get(op, "sub_function_name", "unknown")

violations contains {"id": "canopen", "reason": "canopen_denied"} if {
	input.operation.function == "canopen_general_reference"
	modbus
	not vendor_allowed
}

passes contains {"id": id, "reason": sprintf("vendor_code:%v:%s", [e.code, object.get(e, "name", "")])} if {
	some e in vendor_entries
	id := pass_id
}

pass_id := "canopen" if {
	function == "canopen_general_reference"
} else := "unknown-function"
