# Modbus functions, address ranges and value limits, per target.
#
# For each target (data.modbus_ranges.targets[<target name>]):
#
#   functions  the function allow-list: function names (operation.function)
#              or codes; any other function is denied, and a target that is
#              not listed is denied every call
#   coils, discrete_inputs, holding_registers, input_registers, file_records
#              the ranges of each table that calls may touch, and the values
#              writes may put there: {name, start, end, access, [functions],
#              [min], [max], [signed]} (file_records ranges add file; start
#              and end are record numbers)
#
# Every address a call touches must lie in a range of its table whose access
# lists the call's access (read or write) and, when the range names
# functions (names or codes), whose functions list the call's function. A
# call may span adjacent ranges. The tables the functions touch:
#
#   coils              read: FC 1           write: FC 5, FC 15
#   discrete_inputs    read: FC 2
#   holding_registers  read: FC 3, FC 24 (its pointer address), FC 23 (read
#                      half)    write: FC 6, FC 16, FC 22, FC 23 (write half)
#   input_registers    read: FC 4
#   file_records       read: FC 20          write: FC 21
#
# A range with min and/or max limits every value written to its addresses,
# whatever range allowed the write: each value of FC 5, 6, 15, 16, 21 and the
# write half of FC 23, and for FC 22 (mask write) every result the mask can
# give: (current AND and_mask) OR (or_mask AND NOT and_mask) lies between
# or_mask AND NOT and_mask and that OR and_mask. "signed": true reads
# register values as 16-bit two's complement (65535 is -1). A limit that is
# not a number denies every write to its range.
#
# Functions with no addresses (FC 7, 8, 11, 12, 17, 43, unknown codes) are
# governed by the allow-list alone; deny-unknown decides them in detail.
# Calls of other protocols and session opens pass.
#
# Rules: modbus-function, modbus-address, modbus-value.
# Data: data.modbus_ranges (see README.md).
package interlock.modbus_ranges

# --- fast path ---------------------------------------------------------------
#
# Nearly every call is a plain read or write that lies inside one range of its
# table, which allows it, with (for a write) values within that range's limits
# and no other range overlapping. clean proves that with a few lookups; only
# when it cannot (a rule is broken, or the call is one clean does not cover:
# FC 22, FC 23, file records, a function allowed by code, a signed range,
# overlapping ranges, a span over adjacent ranges) are the rules below
# evaluated, with their reason texts. A decision costs OPA a few steps per
# expression it evaluates, so the fast path decides in a fraction of the time.
# clean must never hold when findings is not empty:
# modbus_ranges_test.rego's test_fast_path_* compare the two for many calls.

violations := set() if clean else := findings

# A read of a listed function of a listed target that lies in one range of
# its table, which allows reads and names no functions. The access test is
# an equality on input, which OPA's rule index uses to skip the body that
# cannot apply.
#
# Every rule, function or data reference costs OPA a lookup and every builtin
# call (<= too) a step, so clean reads input and data directly and writes out
# the tables of the functions it decides (the same as tables and one_address
# below). OPA keeps the variables of a body with more than 16 of them in a
# hash map, which costs a little; a function call to keep a body short costs
# more (the write bodies below are long for that reason).
clean if {
	input.protocol == "modbus"
	input.operation.access == "read"
	table := {
		"read_coils": "coils",
		"read_discrete_inputs": "discrete_inputs",
		"read_holding_registers": "holding_registers",
		"read_input_registers": "input_registers",
		"read_fifo_queue": "holding_registers",
	}[input.operation.function]
	span := plain_span({"read_fifo_queue": 1})
	cfg := data.modbus_ranges.targets[input.target.name]
	input.operation.function in cfg.functions
	some r in cfg[table]
	r.start <= span[0]
	span[1] <= r.end
	"read" in r.access
	not r.functions
}

# A write (FC 5, 6, 15, 16) of a listed function of a listed target that lies
# in one range of its table, the only range of the table it overlaps, which
# allows writes and names no functions, with one value for each address, the
# range not signed, and every value within its limits (the modbus-value
# rule's test, below). interlock.ranges_overlapping finds the ranges a span
# overlaps in one step, where a comprehension takes several per range, and
# interlock.values_within tests the values against the range's min and max
# in one step, where within_limits below takes eight (it is stricter: values
# or limits that are not numbers fail it and go to the rules). The
# span is written out, and so is the rest of the body for FC 15 and 16 (a
# quantity) and for FC 5 and 6 (one address): a function call would cost
# more than the expressions it holds.
clean if {
	input.protocol == "modbus"
	input.operation.access == "write"
	table := {"write_multiple_coils": "coils", "write_multiple_registers": "holding_registers"}[input.operation.function]
	first := input.operation.address
	n := input.operation.quantity
	is_number(first)
	is_number(n)
	last := (first + n) - 1
	cfg := data.modbus_ranges.targets[input.target.name]
	input.operation.function in cfg.functions
	[r] := interlock.ranges_overlapping(cfg[table], first, last)
	r.start <= first
	last <= r.end
	"write" in r.access
	not r.functions
	vs := input.operation.values
	count(vs) == n
	not r.signed
	interlock.values_within(r, vs)
}

clean if {
	input.protocol == "modbus"
	input.operation.access == "write"
	table := {"write_single_coil": "coils", "write_single_register": "holding_registers"}[input.operation.function]
	first := input.operation.address
	is_number(first)
	last := first
	n := 1
	cfg := data.modbus_ranges.targets[input.target.name]
	input.operation.function in cfg.functions
	[r] := interlock.ranges_overlapping(cfg[table], first, last)
	r.start <= first
	last <= r.end
	"write" in r.access
	not r.functions
	vs := input.operation.values
	count(vs) == n
	not r.signed
	interlock.values_within(r, vs)
}

# Another protocol, or a Modbus session open: no rule applies. (After the
# reads and writes: OPA stops at the first body of clean that holds, so a
# read or write does not evaluate this one's tests.)
clean if {
	input.protocol != "modbus"
	no_span_function
} else if {
	input.operation.access == "session"
	no_span_function
}

no_span_function if {
	not tables[input.operation.function]
	not input.operation.function in {"read_file_record", "write_file_record"}
}

# [first, last] address of a call of a function with one span; one names the
# functions that name one address and carry no quantity.
plain_span(one) := [first, (first + n) - 1] if {
	first := input.operation.address
	n := object.get(one, input.operation.function, object.get(input.operation, "quantity", null))
	is_number(first)
	is_number(n)
}

# The hot path reads input and data directly; these defaults are for reason
# texts, so that a missing field never makes a violation disappear.
function := object.get(input, ["operation", "function"], "")

code := object.get(input, ["operation", "code"], -1)

target := object.get(input, ["target", "name"], "")

tcfg := data.modbus_ranges.targets[input.target.name]

function_allowed if input.operation.function in data.modbus_ranges.targets[input.target.name].functions

function_allowed if input.operation.code in data.modbus_ranges.targets[input.target.name].functions

# --- modbus-function -----------------------------------------------------------

findings contains {"id": "modbus-function", "reason": concat(":", ["target_not_listed", target])} if {
	input.protocol == "modbus"
	not data.modbus_ranges.targets[input.target.name]
	input.operation.access != "session"
}

findings contains {"id": "modbus-function", "reason": sprintf("function_not_allowed:%s:%v", [function, code])} if {
	input.protocol == "modbus"
	not function_allowed
	input.operation.access != "session"
	data.modbus_ranges.targets[input.target.name]
}

# --- spans: what a call touches ----------------------------------------------------

# The table and access kind of each function with an address and quantity.
tables := {
	"read_coils": ["coils", "read"],
	"read_discrete_inputs": ["discrete_inputs", "read"],
	"read_holding_registers": ["holding_registers", "read"],
	"read_input_registers": ["input_registers", "read"],
	"read_fifo_queue": ["holding_registers", "read"],
	"write_single_coil": ["coils", "write"],
	"write_multiple_coils": ["coils", "write"],
	"write_single_register": ["holding_registers", "write"],
	"write_multiple_registers": ["holding_registers", "write"],
	"mask_write_register": ["holding_registers", "write"],
	"read_write_multiple_registers": ["holding_registers", "write"],
}

# A span is {table, access, first, last} (the addresses it touches) and, for
# a write, values or mask; file records add file.
main_span := object.union({"table": t[0], "access": t[1], "first": first, "last": (first + quantity) - 1}, payload) if {
	t := tables[input.operation.function]
	first := input.operation.address
	is_number(first)
	is_number(quantity)
}

# FC 5, 6, 22 and 24 name one address and carry no quantity.
one_address := {"write_single_coil", "write_single_register", "mask_write_register", "read_fifo_queue"}

quantity := 1 if input.operation.function in one_address

quantity := input.operation.quantity if not input.operation.function in one_address

# What a write carries; undefined when a field is missing or does not fit.
payload := {} if tables[input.operation.function][1] == "read"

payload := {"values": vs} if {
	tables[input.operation.function][1] == "write"
	vs := input.operation.values
	count(vs) == quantity
}

payload := {"mask": {"and_mask": m, "or_mask": o}} if {
	input.operation.function == "mask_write_register"
	m := input.operation.and_mask
	o := input.operation.or_mask
	is_number(m)
	is_number(o)
}

spans contains main_span if function_allowed

spans contains {"table": "holding_registers", "access": "read", "first": first, "last": (first + quantity) - 1} if {
	input.operation.function == "read_write_multiple_registers"
	function_allowed
	first := input.operation.read_address
	quantity := input.operation.read_quantity
	is_number(first)
	is_number(quantity)
}

spans contains {"table": "file_records", "access": "read", "file": r.file, "first": r.record, "last": (r.record + r.length) - 1} if {
	input.operation.function == "read_file_record"
	function_allowed
	some r in input.operation.records
	record_ok(r)
}

spans contains s if {
	input.operation.function == "write_file_record"
	function_allowed
	some r in input.operation.records
	record_ok(r)
	count(r.values) == r.length
	s := {"table": "file_records", "access": "write", "file": r.file, "first": r.record, "last": (r.record + r.length) - 1, "values": r.values}
}

record_ok(r) if {
	is_number(r.file)
	is_number(r.record)
	is_number(r.length)
}

# The gateway decodes and checks every field before the policy sees it; an
# input that lacks a field a span is built from (a hand-made input, a future
# decoder) is denied rather than let through unchecked.
findings contains {"id": "modbus-address", "reason": concat(":", ["malformed_operation", function])} if {
	input.protocol == "modbus"
	tables[input.operation.function]
	not main_span
	function_allowed
}

findings contains {"id": "modbus-address", "reason": concat(":", ["malformed_operation", function])} if {
	input.operation.function == "read_write_multiple_registers"
	input.protocol == "modbus"
	not read_half_ok
	function_allowed
}

read_half_ok if {
	is_number(input.operation.read_address)
	is_number(input.operation.read_quantity)
}

findings contains {"id": "modbus-address", "reason": concat(":", ["malformed_operation", function])} if {
	input.operation.function in {"read_file_record", "write_file_record"}
	input.protocol == "modbus"
	not records_ok
	function_allowed
}

records_ok if {
	is_array(input.operation.records)
	every r in input.operation.records {
		record_ok(r)
		record_values_ok(r)
	}
}

record_values_ok(_) if input.operation.function == "read_file_record"

record_values_ok(r) if count(r.values) == r.length

table_name(s) := sprintf("file_records/%v", [s.file]) if s.table == "file_records"

table_name(s) := s.table if s.table != "file_records"

# The ranges of a span's table (of its file, for file records).
ranges(s) := tcfg[s.table] if s.table != "file_records"

ranges(s) := [r | some r in tcfg.file_records; r.file == s.file] if s.table == "file_records"

# --- modbus-address ------------------------------------------------------------------

usable(r, s) if {
	s.access in r.access
	for_function(r)
}

for_function(r) if not r.functions

for_function(r) if input.operation.function in r.functions

for_function(r) if input.operation.code in r.functions

# Nearly every call lies in one range: that is checked first.
in_one_range(s) if {
	some r in ranges(s)
	r.start <= s.first
	s.last <= r.end
	usable(r, s)
}

covered(rs, a) if {
	some r in rs
	r.start <= a
	a <= r.end
}

# The first run of addresses of s that no usable range covers, as [from, to].
# An uncovered run can only begin at the span's first address or right after
# a range ends, so only those addresses are tried: the cost grows with the
# number of ranges, not with the quantity.
first_gap(s) := [from, to] if {
	rs := [r | some r in ranges(s); r.start <= s.last; s.first <= r.end; usable(r, s)]
	candidates := array.concat([s.first], [x | some r in rs; x := r.end + 1])
	gaps := [x | some x in candidates; x <= s.last; not covered(rs, x)]
	count(gaps) > 0
	from := min(gaps)
	to := min(array.concat([s.last], [y | some r in rs; r.start > from; y := r.start - 1]))
}

findings contains {"id": "modbus-address", "reason": sprintf("address_not_allowed:%s:%s:%v..%v", [table_name(s), s.access, gap[0], gap[1]])} if {
	some s in spans
	not in_one_range(s)
	gap := first_gap(s)
}

# --- modbus-value ----------------------------------------------------------------------

limited(r) if r.min

limited(r) if r.max

# Whether every value in [low, high] is within r's limits. A limit that is
# not a number is never met: a typo in data denies every write to its range.
within_limits(r, low, high) if {
	lower := object.get(r, "min", low)
	upper := object.get(r, "max", high)
	is_number(lower)
	is_number(upper)
	lower <= low
	high <= upper
}

limit_text(r) := sprintf("%v..%v", [object.get(r, "min", ""), object.get(r, "max", "")])

to_signed(v) := v - 65536 if v >= 32768

to_signed(v) := v if v < 32768

as_limited(vs, r) := [to_signed(v) | some v in vs] if r.signed == true

as_limited(vs, r) := vs if not r.signed == true

# Values written to [from, to] of range r: the first one out of its limits.
# min and max of the slice rule out the common case without a loop.
value_problem(s, r, from, to) := sprintf("value_out_of_range:%s:%v=%v:limit=%s", [r.name, from + i, xs[i], limit_text(r)]) if {
	xs := as_limited(array.slice(s.values, from - s.first, (to - s.first) + 1), r)
	not within_limits(r, min(xs), max(xs))
	i := min([j | some j, x in xs; not within_limits(r, x, x)])
}

# A mask write: the lowest and highest result the mask can give.
value_problem(s, r, _, _) := sprintf("value_out_of_range:%s:%v=%v..%v:limit=%s", [r.name, s.first, b[0], b[1], limit_text(r)]) if {
	b := mask_bounds(s.mask, object.get(r, "signed", false) == true)
	not within_limits(r, b[0], b[1])
}

mask_low(m) := bits.and(m.or_mask, bits.xor(m.and_mask, 65535))

mask_high(m) := bits.or(mask_low(m), m.and_mask)

mask_bounds(m, false) := [mask_low(m), mask_high(m)]

# Signed, sign bit fixed by the mask: the order is the unsigned one.
mask_bounds(m, true) := [to_signed(mask_low(m)), to_signed(mask_high(m))] if bits.and(m.and_mask, 32768) == 0

# Signed, sign bit kept from the register: negative and positive results.
mask_bounds(m, true) := [to_signed(bits.or(mask_low(m), 32768)), bits.and(mask_high(m), 32767)] if {
	bits.and(m.and_mask, 32768) != 0
}

findings contains {"id": "modbus-value", "reason": problem} if {
	some s in spans
	s.access == "write"
	some r in ranges(s)
	r.start <= s.last
	s.first <= r.end
	limited(r)
	from := max([s.first, r.start])
	to := min([s.last, r.end])
	problem := value_problem(s, r, from, to)
}

passes := set()
