package interlock.modbus_ranges_test

import data.interlock

# --- fixtures ----------------------------------------------------------------

all_functions := [
	"read_coils", "read_discrete_inputs", "read_holding_registers", "read_input_registers",
	"write_single_coil", "write_multiple_coils", "write_single_register", "write_multiple_registers",
	"mask_write_register", "read_write_multiple_registers", "read_fifo_queue",
	"read_file_record", "write_file_record", "read_device_identification",
]

cfg := {"targets": {
	"plc1": {
		"functions": all_functions,
		"coils": [
			{"name": "pumps", "start": 0, "end": 15, "access": ["read", "write"]},
			{"name": "bypass", "start": 16, "end": 19, "access": ["read", "write"], "max": 0},
		],
		"discrete_inputs": [{"name": "status", "start": 0, "end": 127, "access": ["read"]}],
		"input_registers": [{"name": "measurements", "start": 0, "end": 99, "access": ["read"]}],
		"holding_registers": [
			{"name": "process", "start": 0, "end": 99, "access": ["read"]},
			{"name": "temperature", "start": 100, "end": 109, "access": ["read", "write"], "min": 0, "max": 1200},
			{"name": "speed", "start": 110, "end": 119, "access": ["read", "write"], "min": 0, "max": 3000},
			{"name": "offsets", "start": 120, "end": 123, "access": ["read", "write"], "signed": true, "min": -500, "max": 500},
			{"name": "mode", "start": 130, "end": 130, "access": ["read", "write"], "functions": ["read_holding_registers", "write_single_register", 22]},
			{"name": "fifo", "start": 300, "end": 300, "access": ["read"], "functions": ["read_fifo_queue"]},
			{"name": "safety", "start": 200, "end": 209, "access": ["read"]},
		],
		"file_records": [{"name": "recipes", "file": 4, "start": 0, "end": 999, "access": ["read", "write"], "min": 0, "max": 10000}],
	},
	"plc2": {
		"functions": [3, "read_device_identification"],
		"holding_registers": [{"name": "all", "start": 0, "end": 65535, "access": ["read"]}],
	},
}}

call(target, op) := {
	"protocol": "modbus",
	"principal": {"user": "alice", "auth": "inventory", "roles": ["engineer"]},
	"source": {"ip": "10.0.5.7", "port": 50123, "name": "ews-alice"},
	"target": {"name": target, "upstream": "tcp://10.0.0.20:502", "unit_id": 1},
	"operation": op,
	"tickets": [],
}

decide(op) := decide_on("plc1", op)

decide_on(target, op) := d if {
	d := interlock.decision with input as call(target, op) with data.modbus_ranges as cfg
}

allowed(op) if decide(op).allow

read(function, code, address, quantity) := {"function": function, "code": code, "access": "read", "address": address, "quantity": quantity}

fc1(a, q) := read("read_coils", 1, a, q)

fc2(a, q) := read("read_discrete_inputs", 2, a, q)

fc3(a, q) := read("read_holding_registers", 3, a, q)

fc4(a, q) := read("read_input_registers", 4, a, q)

fc5(a, v) := {"function": "write_single_coil", "code": 5, "access": "write", "address": a, "values": [v]}

fc6(a, v) := {"function": "write_single_register", "code": 6, "access": "write", "address": a, "values": [v]}

fc15(a, vs) := {"function": "write_multiple_coils", "code": 15, "access": "write", "address": a, "quantity": count(vs), "values": vs}

fc16(a, vs) := {"function": "write_multiple_registers", "code": 16, "access": "write", "address": a, "quantity": count(vs), "values": vs}

fc22(a, and_mask, or_mask) := {"function": "mask_write_register", "code": 22, "access": "write", "address": a, "and_mask": and_mask, "or_mask": or_mask}

fc23(ra, rq, wa, vs) := {
	"function": "read_write_multiple_registers", "code": 23, "access": "write",
	"address": wa, "quantity": count(vs), "values": vs, "read_address": ra, "read_quantity": rq,
}

# --- function allow-list ----------------------------------------------------------

test_listed_function_in_range_allowed if {
	d := decide(fc3(0, 10))
	d.allow
	not d.alert
	d.reasons == []
}

test_function_not_listed_denied if {
	d := decide_on("plc2", fc6(10, 1))
	not d.allow
	d.alert
	d.reasons == ["modbus-function:enforced:function_not_allowed:write_single_register:6"]
}

test_functions_listed_by_code if {
	decide_on("plc2", fc3(1000, 10)).allow
	not decide_on("plc2", fc4(0, 1)).allow
}

test_function_without_addresses_governed_by_the_list_alone if {
	op := {"function": "read_device_identification", "code": 43, "access": "diagnostic", "mei_type": 14, "read_device_id_code": 1, "object_id": 0}
	decide_on("plc2", op).allow
	diag := {"function": "diagnostics", "code": 8, "access": "diagnostic", "sub_function": 0, "sub_function_name": "return_query_data", "values": [1]}
	d := decide_on("plc2", diag)
	d.reasons == ["modbus-function:enforced:function_not_allowed:diagnostics:8"]
}

test_unknown_code_not_listed_denied if {
	d := decide({"function": "unknown", "code": 90, "access": "program", "data": "0001"})
	d.reasons == ["modbus-function:enforced:function_not_allowed:unknown:90"]
}

test_target_not_listed_denied if {
	d := decide_on("plc9", fc3(0, 1))
	not d.allow
	d.reasons == ["modbus-function:enforced:target_not_listed:plc9"]
}

test_session_open_and_other_protocols_pass if {
	decide_on("plc9", {"function": "session.open", "access": "session"}).allow
	c := object.union(call("line1", {"function": "write", "access": "write", "node_id": "ns=2;s=X"}), {"protocol": "opcua"})
	interlock.decision.allow with input as c with data.modbus_ranges as cfg
}

test_no_data_denies_every_call if {
	not interlock.decision.allow with input as call("plc1", fc3(0, 1)) with data.modbus_ranges as {}
}

# --- address ranges -------------------------------------------------------------

test_read_spanning_adjacent_ranges_allowed if {
	allowed(fc3(95, 10)) # process 95..99, temperature 100..104
	allowed(fc3(0, 124)) # process, temperature, speed, offsets
}

test_read_running_into_a_gap if {
	d := decide(fc3(120, 11)) # offsets 120..123, gap 124..129, mode 130
	not d.allow
	d.reasons == ["modbus-address:enforced:address_not_allowed:holding_registers:read:124..129"]
}

test_read_starting_in_a_gap if {
	d := decide(fc3(125, 2))
	d.reasons == ["modbus-address:enforced:address_not_allowed:holding_registers:read:125..126"]
}

test_read_past_the_last_range if {
	d := decide(fc3(205, 10))
	d.reasons == ["modbus-address:enforced:address_not_allowed:holding_registers:read:210..214"]
}

test_range_edges if {
	allowed(fc3(200, 10))
	not allowed(fc3(199, 1))
	not allowed(fc3(210, 1))
}

test_write_to_read_only_range_denied if {
	d := decide(fc6(200, 1))
	d.reasons == ["modbus-address:enforced:address_not_allowed:holding_registers:write:200..200"]
	d2 := decide(fc16(98, [1, 2, 3]))
	d2.reasons == ["modbus-address:enforced:address_not_allowed:holding_registers:write:98..99"]
}

test_tables_are_separate if {
	allowed(fc1(0, 20))
	not allowed(fc1(20, 1))
	allowed(fc2(0, 128))
	not allowed(fc2(128, 1))
	allowed(fc4(0, 100))
	d := decide(fc4(100, 1)) # holding register 100 is a setpoint, input register 100 is not listed
	d.reasons == ["modbus-address:enforced:address_not_allowed:input_registers:read:100..100"]
}

test_range_narrowed_to_functions if {
	allowed(fc6(130, 7))
	allowed(fc22(130, 65280, 1)) # listed by code
	allowed(fc3(130, 1))
	d := decide(fc16(130, [7]))
	d.reasons == ["modbus-address:enforced:address_not_allowed:holding_registers:write:130..130"]
	not allowed(fc3(129, 2))
}

test_fifo_reads_its_pointer_address if {
	fifo := {"function": "read_fifo_queue", "code": 24, "access": "read", "address": 300}
	allowed(fifo)
	not allowed(object.union(fifo, {"address": 301}))
	not allowed(fc3(300, 1)) # the range is only for FC 24
}

test_fc23_checks_both_halves if {
	allowed(fc23(0, 10, 100, [20, 30]))
	r := decide(fc23(124, 2, 100, [20]))
	r.reasons == ["modbus-address:enforced:address_not_allowed:holding_registers:read:124..125"]
	w := decide(fc23(0, 10, 90, [1]))
	w.reasons == ["modbus-address:enforced:address_not_allowed:holding_registers:write:90..90"]
}

test_file_records if {
	rd := {"function": "read_file_record", "code": 20, "access": "read", "records": [
		{"file": 4, "record": 0, "length": 10},
		{"file": 4, "record": 990, "length": 10},
	]}
	allowed(rd)
	other := {"function": "read_file_record", "code": 20, "access": "read", "records": [
		{"file": 4, "record": 0, "length": 10},
		{"file": 5, "record": 0, "length": 10},
	]}
	decide(other).reasons == ["modbus-address:enforced:address_not_allowed:file_records/5:read:0..9"]
	past := {"function": "read_file_record", "code": 20, "access": "read", "records": [{"file": 4, "record": 995, "length": 10}]}
	decide(past).reasons == ["modbus-address:enforced:address_not_allowed:file_records/4:read:1000..1004"]
}

# --- value limits ------------------------------------------------------------------

test_fc6_within_limits if {
	allowed(fc6(105, 0))
	allowed(fc6(105, 1200))
	allowed(fc6(115, 3000))
}

test_fc6_over_limit_names_the_range if {
	d := decide(fc6(105, 1201))
	not d.allow
	d.reasons == ["modbus-value:enforced:value_out_of_range:temperature:105=1201:limit=0..1200"]
}

test_fc16_values_checked_per_range if {
	allowed(fc16(108, [1200, 1200, 3000, 0]))
	d := decide(fc16(108, [100, 1200, 2999, 3001]))
	d.reasons == ["modbus-value:enforced:value_out_of_range:speed:111=3001:limit=0..3000"]
}

test_fc16_reports_the_first_bad_value_of_each_range if {
	d := decide(fc16(100, [0, 5000, 6000, 1, 1, 1, 1, 1, 1, 1, 9999]))
	d.reasons == [
		"modbus-value:enforced:value_out_of_range:speed:110=9999:limit=0..3000",
		"modbus-value:enforced:value_out_of_range:temperature:101=5000:limit=0..1200",
	]
}

test_fc16_full_length_write if {
	vs := [v | some _ in numbers.range(1, 123); v := 0]
	count(vs) == 123
	one := {"targets": {"plc1": {"functions": all_functions, "holding_registers": [
		{"name": "all", "start": 0, "end": 65535, "access": ["write"], "max": 10},
	]}}}
	ok := interlock.decision with input as call("plc1", fc16(65413, vs)) with data.modbus_ranges as one
	ok.allow
	bad := array.concat(array.slice(vs, 0, 122), [11])
	d := interlock.decision with input as call("plc1", fc16(65413, bad)) with data.modbus_ranges as one
	d.reasons == ["modbus-value:enforced:value_out_of_range:all:65535=11:limit=..10"]
}

test_fc23_write_half_is_limited if {
	d := decide(fc23(0, 10, 100, [1300]))
	d.reasons == ["modbus-value:enforced:value_out_of_range:temperature:100=1300:limit=0..1200"]
}

test_address_and_value_violations_together if {
	d := decide(fc16(108, [9999, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1]))
	d.reasons == [
		"modbus-address:enforced:address_not_allowed:holding_registers:write:124..124",
		"modbus-value:enforced:value_out_of_range:temperature:108=9999:limit=0..1200",
	]
}

test_limits_apply_whatever_range_allowed_the_write if {
	overlapping := {"targets": {"plc1": {"functions": all_functions, "holding_registers": [
		{"name": "setpoints", "start": 100, "end": 119, "access": ["write"]},
		{"name": "temperature", "start": 100, "end": 109, "min": 0, "max": 1200},
	]}}}
	d := interlock.decision with input as call("plc1", fc6(101, 2000)) with data.modbus_ranges as overlapping
	d.reasons == ["modbus-value:enforced:value_out_of_range:temperature:101=2000:limit=0..1200"]
	interlock.decision.allow with input as call("plc1", fc6(111, 2000)) with data.modbus_ranges as overlapping
}

test_signed_values if {
	allowed(fc6(120, 500))
	allowed(fc6(120, 65036)) # -500
	d := decide(fc6(121, 65035)) # -501
	d.reasons == ["modbus-value:enforced:value_out_of_range:offsets:121=-501:limit=-500..500"]
	d2 := decide(fc6(122, 501))
	d2.reasons == ["modbus-value:enforced:value_out_of_range:offsets:122=501:limit=-500..500"]
}

test_fc22_mask_results_within_limits if {
	allowed(fc22(105, 0, 500)) # sets the register to 500
	allowed(fc22(105, 255, 0)) # keeps the low byte: 0..255
	allowed(fc22(105, 1023, 128)) # 0..1023 with bit 7 set: 128..1023
}

test_fc22_mask_that_can_exceed_the_limit_denied if {
	d := decide(fc22(105, 4095, 0))
	d.reasons == ["modbus-value:enforced:value_out_of_range:temperature:105=0..4095:limit=0..1200"]
	keep := decide(fc22(105, 65535, 0)) # "no change" cannot be bounded either
	keep.reasons == ["modbus-value:enforced:value_out_of_range:temperature:105=0..65535:limit=0..1200"]
	set := decide(fc22(105, 0, 1300))
	set.reasons == ["modbus-value:enforced:value_out_of_range:temperature:105=1300..1300:limit=0..1200"]
}

test_fc22_signed if {
	allowed(fc22(120, 0, 65036)) # sets -500
	allowed(fc22(120, 255, 65280)) # high byte 0xFF, low byte kept: -256..-1
	d := decide(fc22(120, 32768, 1)) # sign bit kept: -32767 or 1
	d.reasons == ["modbus-value:enforced:value_out_of_range:offsets:120=-32767..1:limit=-500..500"]
}

test_coil_limits if {
	allowed(fc5(16, 0))
	d := decide(fc5(17, 1))
	d.reasons == ["modbus-value:enforced:value_out_of_range:bypass:17=1:limit=..0"]
	allowed(fc15(14, [1, 1, 0, 0, 0, 0]))
	d2 := decide(fc15(14, [1, 1, 0, 1, 0, 0]))
	d2.reasons == ["modbus-value:enforced:value_out_of_range:bypass:17=1:limit=..0"]
}

test_file_record_values_limited if {
	wr := {"function": "write_file_record", "code": 21, "access": "write", "records": [
		{"file": 4, "record": 10, "length": 2, "values": [10000, 10001]},
	]}
	d := decide(wr)
	d.reasons == ["modbus-value:enforced:value_out_of_range:recipes:11=10001:limit=0..10000"]
	ok := {"function": "write_file_record", "code": 21, "access": "write", "records": [
		{"file": 4, "record": 10, "length": 2, "values": [0, 10000]},
	]}
	allowed(ok)
}

# --- staging -----------------------------------------------------------------------

test_staged_value_rule_alerts_while_address_rule_blocks if {
	over := decide(fc6(105, 1500)) with data.staging as ["modbus-value"]
	over.allow
	over.alert
	over.reasons == ["modbus-value:monitor:value_out_of_range:temperature:105=1500:limit=0..1200"]
	ro := decide(fc6(200, 1)) with data.staging as ["modbus-value"]
	not ro.allow
}

# --- the shipped data.json -----------------------------------------------------------

test_shipped_data if {
	interlock.decision.allow with input as call("plc1", fc16(100, [650, 700]))
	not interlock.decision.allow with input as call("plc1", fc16(100, [650, 7000]))
	not interlock.decision.allow with input as call("plc1", fc6(200, 1))
	not interlock.decision.allow with input as call("plc1", fc5(16, 1))
	interlock.decision.allow with input as call("plc2", fc3(40000, 100))
	not interlock.decision.allow with input as call("plc2", fc6(1, 1))
	not interlock.decision.allow with input as call("plc3", fc3(0, 1))
}

# --- fail closed -------------------------------------------------------------------

test_operation_without_its_fields_denied if {
	d := decide({"function": "write_single_register", "code": 6, "access": "write", "address": 105})
	d.reasons == ["modbus-address:enforced:malformed_operation:write_single_register"]
	d2 := decide({"function": "write_multiple_registers", "code": 16, "access": "write", "address": 105, "quantity": 2, "values": [1]})
	d2.reasons == ["modbus-address:enforced:malformed_operation:write_multiple_registers"]
	d3 := decide({"function": "mask_write_register", "code": 22, "access": "write", "address": 105, "and_mask": 0})
	d3.reasons == ["modbus-address:enforced:malformed_operation:mask_write_register"]
	d4 := decide({"function": "read_holding_registers", "code": 3, "access": "read", "address": 0})
	d4.reasons == ["modbus-address:enforced:malformed_operation:read_holding_registers"]
	d5 := decide({"function": "write_file_record", "code": 21, "access": "write", "records": [{"file": 4, "record": 1, "length": 2, "values": [1]}]})
	d5.reasons == ["modbus-address:enforced:malformed_operation:write_file_record"]
	d6 := decide({"function": "read_write_multiple_registers", "code": 23, "access": "write", "address": 100, "quantity": 1, "values": [1], "read_address": 0})
	d6.reasons == ["modbus-address:enforced:malformed_operation:read_write_multiple_registers"]
	d7 := decide({"function": "read_coils", "code": 1, "access": "read", "quantity": 1})
	d7.reasons == ["modbus-address:enforced:malformed_operation:read_coils"]
}

test_limit_that_is_not_a_number_denies_writes if {
	typo := {"targets": {"plc1": {"functions": all_functions, "holding_registers": [
		{"name": "temperature", "start": 100, "end": 109, "access": ["read", "write"], "max": "1200"},
	]}}}
	not interlock.decision.allow with input as call("plc1", fc6(101, 1)) with data.modbus_ranges as typo
	interlock.decision.allow with input as call("plc1", fc3(101, 1)) with data.modbus_ranges as typo
}

test_shipped_ranges_are_well_formed if {
	tables := {"coils", "discrete_inputs", "holding_registers", "input_registers", "file_records"}
	every name, t in data.modbus_ranges.targets {
		is_string(name)
		is_array(t.functions)
		every key, ranges in t {
			key in (tables | {"functions"})
			well_formed_ranges(key, ranges)
		}
	}
}

well_formed_ranges("functions", _)

well_formed_ranges(table, ranges) if {
	table != "functions"
	every r in ranges {
		is_string(r.name)
		is_number(r.start)
		is_number(r.end)
		r.start <= r.end
		every a in r.access {
			a in {"read", "write"}
		}
		every k in ["min", "max"] {
			is_number(object.get(r, k, 0))
		}
		file_given(table, r)
	}
}

file_given("file_records", r) if is_number(r.file)

file_given(table, _) if table != "file_records"

# --- the fast path -----------------------------------------------------------------
#
# clean lets most calls skip the rules (modbus_ranges.rego, "fast path"). It
# must hold only for calls the rules find nothing in, and every call must get
# the decision the rules alone give, reasons included.

# Calls clean decides: reads and writes inside one range, another protocol's
# call, a session open.
fast_calls := [
	call("plc1", fc1(0, 16)),
	call("plc1", fc2(0, 128)),
	call("plc1", fc3(0, 100)),
	call("plc1", fc3(100, 10)),
	call("plc1", fc4(99, 1)),
	call("plc1", fc5(3, 1)),
	call("plc1", fc5(16, 0)),
	call("plc1", fc6(105, 1200)),
	call("plc1", fc6(100, 0)),
	call("plc1", fc15(0, [1, 0, 1])),
	call("plc1", fc16(100, [0, 1200, 650])),
	call("plc1", fc16(110, [3000, 0])),
	object.union(call("plc1", {"function": "read", "access": "read", "node_id": "ns=2;s=X"}), {"protocol": "opcua"}),
	call("plc1", {"function": "session.open", "access": "session"}),
	call("plc9", {"function": "session.open", "access": "session"}),
]

# Calls clean leaves to the rules: broken rules, and allowed calls it does
# not cover (spans over two ranges, FC 22, FC 23, file records, a range with
# functions, a signed range, a function allowed by its code).
slow_calls := [
	call("plc1", fc1(0, 20)),
	call("plc1", fc3(0, 101)),
	call("plc1", {"function": "read_fifo_queue", "code": 24, "access": "read", "address": 300}),
	call("plc1", {"function": "read_fifo_queue", "code": 24, "access": "read", "address": 301}),
	call("plc1", fc3(95, 10)),
	call("plc1", fc3(150, 1)),
	call("plc1", fc6(200, 1)),
	call("plc1", fc6(105, 1201)),
	call("plc1", fc6(105, -1)),
	call("plc1", fc16(108, [1, 2, 3])),
	call("plc1", fc16(108, [1, 2, 3000])),
	call("plc1", fc15(14, [1, 1, 0, 1])),
	call("plc1", fc5(17, 1)),
	call("plc1", fc6(121, 65035)),
	call("plc1", fc6(121, 5)),
	call("plc1", fc6(130, 1)),
	call("plc1", fc3(130, 1)),
	call("plc1", fc22(105, 0, 500)),
	call("plc1", fc22(105, 4095, 0)),
	call("plc1", fc23(0, 10, 105, [700])),
	call("plc1", fc23(0, 10, 105, [7000])),
	call("plc1", {"function": "read_file_record", "code": 20, "access": "read", "records": [{"file": 4, "record": 1, "length": 2}]}),
	call("plc1", {"function": "write_file_record", "code": 21, "access": "write", "records": [{"file": 4, "record": 1, "length": 1, "values": [20000]}]}),
	call("plc1", {"function": "read_device_identification", "code": 43, "access": "read"}),
	call("plc1", {"function": "write_single_register", "code": 6, "access": "write", "address": 105}),
	call("plc1", {"function": "write_multiple_registers", "code": 16, "access": "write", "address": 105, "quantity": 2, "values": [1]}),
	call("plc1", {"function": "read_holding_registers", "code": 3, "access": "read", "address": 0}),
	call("plc1", {"function": "read_holding_registers", "code": 3, "access": "read", "address": "0", "quantity": 1}),
	call("plc1", {"function": "unknown", "code": 90, "access": "program"}),
	call("plc2", fc3(0, 10)),
	call("plc2", fc6(1, 1)),
	call("plc3", fc3(0, 1)),
	object.union(call("plc1", fc6(105, 1)), {"protocol": "opcua"}),
	object.union(call("plc1", fc16(100, [5000])), {"protocol": "opcua"}),
]

# Overlapping ranges: a write into one of them must meet both limits.
overlapping := {"targets": {"plc1": {"functions": all_functions, "holding_registers": [
	{"name": "setpoints", "start": 100, "end": 119, "access": ["read", "write"]},
	{"name": "temperature", "start": 100, "end": 109, "min": 0, "max": 1200},
]}}}

test_fast_path_decides_the_common_calls if {
	every c in fast_calls {
		interlock.modbus_ranges.clean with input as c with data.modbus_ranges as cfg
	}
}

test_fast_path_leaves_the_others_to_the_rules if {
	every c in slow_calls {
		not interlock.modbus_ranges.clean with input as c with data.modbus_ranges as cfg
	}
	not interlock.modbus_ranges.clean with input as call("plc1", fc6(101, 5)) with data.modbus_ranges as overlapping
}

test_fast_path_only_where_no_rule_is_broken if {
	every c in array.concat(fast_calls, slow_calls) {
		same_decision(c, cfg)
	}
	same_decision(call("plc1", fc6(101, 5)), overlapping)
	same_decision(call("plc1", fc6(101, 5000)), overlapping)
	same_decision(call("plc1", fc16(100, [650, 700])), data.modbus_ranges)
	same_decision(call("plc1", fc3(0, 10)), data.modbus_ranges)
}

# The decision with the fast path is the one without it, and clean holds
# only when the rules find nothing.
same_decision(c, d) if {
	fast := interlock.decision with input as c with data.modbus_ranges as d
	slow := interlock.decision with input as c with data.modbus_ranges as d with interlock.modbus_ranges.clean as false
	fast == slow
	findings := interlock.modbus_ranges.findings with input as c with data.modbus_ranges as d
	clean_only_if_nothing_found(c, d, findings)
}

clean_only_if_nothing_found(c, d, _) if not interlock.modbus_ranges.clean with input as c with data.modbus_ranges as d

clean_only_if_nothing_found(_, _, findings) if count(findings) == 0

# Ranges as data should not have them, and writes the fast path must leave
# to the rules or decide as they do: overlapping, unordered and malformed
# ranges, limits that are not numbers, a table that is an object or no
# collection.
odd_ranges := {"targets": {
	"plc1": {
		"functions": all_functions,
		"coils": {"a": {"name": "pumps", "start": 0, "end": 15, "access": ["read", "write"]}, "b": {"name": "bypass", "start": 16, "end": 19, "access": ["write"], "max": "0"}},
		"holding_registers": [
			{"name": "setpoints", "start": 100, "end": 119, "access": ["read", "write"]},
			{"name": "process", "start": 0, "end": 99, "access": ["read", "write"], "min": null},
			{"name": "temperature", "start": 100, "end": 109, "min": 0, "max": 1200},
			{"name": "no_start", "end": 125, "access": ["write"]},
			{"name": "strings", "start": "120", "end": "zzz", "access": ["write"]},
			{"name": "high", "start": 200, "end": 65535, "access": ["write"], "max": 3000},
			17,
		],
	},
	"plc2": {"functions": all_functions, "holding_registers": "none", "coils": [{"name": "c", "start": 0, "end": 100, "access": ["write"], "min": 0, "max": 1}]},
}}

test_fast_path_odd_ranges if {
	every target in ["plc1", "plc2"] {
		every op in [
			fc5(3, 1), fc5(17, 0), fc5(50, 1), fc5(50, 2), fc15(0, [1, 0, 1]), fc15(14, [1, 1, 0]), fc15(99, [0, 1]),
			fc6(5, 7), fc6(101, 5), fc6(101, 5000), fc6(112, 1), fc6(121, 1), fc6(300, 2999), fc6(300, 3001),
			fc16(98, [1, 2]), fc16(110, [1, 2]), fc16(105, [650, 700]), fc16(200, [0, 3000]), fc16(65535, [1]), fc16(65535, [1, 2]),
		] {
			same_decision(call(target, op), odd_ranges)
		}
	}
}
