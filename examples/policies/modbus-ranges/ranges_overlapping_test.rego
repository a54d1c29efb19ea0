# The write fast path (modbus_ranges.rego) finds the ranges a span overlaps
# with the gateway's builtin interlock.ranges_overlapping: it must give what
# the comprehension it stands for gives. (A package of its own: the other
# tests import data.interlock, which hides the builtin's name.)
package interlock.ranges_overlapping_test

tables := [
	data.modbus_ranges.targets.plc1.coils,
	data.modbus_ranges.targets.plc1.holding_registers,
	data.modbus_ranges.targets.plc1.file_records,
	{"x": {"start": 5, "end": 9}, "y": {"start": 0, "end": 4}},
	{{"start": 5, "end": 9}, {"start": 0, "end": 4}},
	[{"end": 9}, {"start": 0}, 7, "r", {"start": "0", "end": 9}, {"start": 0, "end": "9"}, {"start": null, "end": 9}],
	"no ranges",
	[],
]

spans := [[0, 0], [15, 16], [19, 20], [99, 100], [105, 106], [100, 130], [124, 129], [300, 300], [109, 108], ["1", 2], [1, null]]

test_ranges_overlapping_is_the_comprehension if {
	every rs in tables {
		every span in spans {
			interlock.ranges_overlapping(rs, span[0], span[1]) == [r | some r in rs; r.start <= span[1]; span[0] <= r.end]
		}
	}
}

test_ranges_overlapping_finds if {
	interlock.ranges_overlapping(data.modbus_ranges.targets.plc1.holding_registers, 105, 106) == [data.modbus_ranges.targets.plc1.holding_registers[1]]
	interlock.ranges_overlapping(data.modbus_ranges.targets.plc1.holding_registers, 99, 100) == array.slice(data.modbus_ranges.targets.plc1.holding_registers, 0, 2)
	interlock.ranges_overlapping(data.modbus_ranges.targets.plc1.holding_registers, 124, 129) == []
}
