# Quickstart policy: who may change what on the PLC, from where, and when.
#
# - Reads are always allowed (an unknown source raises an alert).
# - Writes are allowed only for an approved engineer account, from an
#   approved workstation, inside a maintenance window for the target or
#   under an open change ticket for that user, target and access
#   (`interlock ticket open`); the decision names the ticket.
# - Diagnostics (FC 8) and unknown or vendor function codes are denied.
# - Any write that touches a protected register range raises an alert.
#
# Data (data.json): accounts, approved_sources, maintenance_windows (one-off
# start/end, or recurring cron + duration + tz), protected_ranges. The
# gateway reloads this directory when a file changes; tickets arrive as
# input.tickets.
package interlock

default decision := {"allow": false, "alert": true, "reasons": ["no_rule_allows"]}

op := input.operation

# Session open: anyone may connect; unknown sources are flagged.
decision := {"allow": true, "alert": unknown_source, "reasons": ["session"]} if {
	input.operation.access == "session"
}

decision := {"allow": true, "alert": unknown_source, "reasons": ["read"]} if {
	input.operation.access == "read"
}

# Device identification and comm counters are reads of the device itself.
decision := {"allow": true, "alert": unknown_source, "reasons": ["diagnostic_read"]} if {
	input.operation.access == "diagnostic"
	input.operation.function != "diagnostics"
}

decision := {"allow": false, "alert": true, "reasons": ["diagnostics_denied"]} if {
	input.operation.function == "diagnostics"
}

decision := {"allow": false, "alert": true, "reasons": ["unknown_function_denied"]} if {
	input.operation.access == "program"
}

# Nearly every write that reaches the gateway is allowed and touches no
# protected range: an engineer at an approved workstation, in a window or
# under a ticket. The first way decides those with what they need (the
# windows, or the tickets: allowed_write), without the denial, alert and
# reason rules below; the second decides a denied write (no alert or ticket
# rule needed); the last way is the general one. OPA spends a step on every
# rule, builtin call and comprehension it evaluates, so the first way tests
# the account and the source in line and for no protected range by
# comparing with set() (no count), and each way names the access kind (a
# way after the first is tried whenever the first fails). The tests check
# that each way gives what the general one gives.
decision := d if {
	input.operation.access == "write"
	"engineer" in data.accounts[input.principal.user].roles
	input.source.name in data.approved_sources
	d := allowed_write
} else := {"allow": false, "alert": true, "reasons": array.concat(
	sort(write_denials),
	sort([concat(":", ["protected_range", h]) | some h in protected_hits]),
)} if {
	input.operation.access == "write"
	count(write_denials) > 0
} else := object.union(
	{"allow": count(write_denials) == 0, "alert": alert_write, "reasons": write_reasons},
	ticket_field,
) if {
	input.operation.access == "write"
}

# An engineer's write from an approved source that touches no protected
# range: in a window, or (outside every window) under a ticket.
allowed_write := {"allow": true, "alert": false, "reasons": sort([concat(":", ["maintenance_window", w]) | some w in open_windows])} if {
	open_windows != set()
	protected_hits == set()
} else := {"allow": true, "alert": false, "reasons": sort([concat(":", ["ticket", t]) | some t in open_tickets]), "ticket": min(open_tickets)} if {
	open_tickets != set()
	protected_hits == set()
}

# The ticket that allowed a write outside every window, for the audit record.
default ticket_field := {}

ticket_field := {"ticket": min(open_tickets)} if {
	count(write_denials) == 0
	count(open_windows) == 0
}

default unknown_source := false

unknown_source if input.principal.auth == "none"

# Why a write is refused; empty means it may go.
write_denials contains "account_not_approved" if not engineer

write_denials contains "source_not_approved" if not approved_source

write_denials contains "outside_maintenance_window" if {
	count(open_windows) == 0
	count(open_tickets) == 0
}

engineer if "engineer" in data.accounts[input.principal.user].roles

approved_source if input.source.name in data.approved_sources

open_windows contains w.name if {
	now := time.now_ns()
	some w in data.maintenance_windows
	input.target.name in w.targets
	interlock.window_open(w, now)
}

# Open change tickets for this user, target and access.
open_tickets contains t.id if {
	some t in input.tickets
	t.user == input.principal.user
	input.target.name in t.targets
	input.operation.access in t.access
}

# Protected ranges the write touches: [address, address+quantity) overlaps [start, end].
protected_hits contains r.name if {
	some r in data.protected_ranges
	r.target == input.target.name
	input.operation.address <= r.end
	r.start < input.operation.address + input.operation.quantity
}

# FC 22 (mask write) names one register and carries no quantity.
protected_hits contains r.name if {
	not input.operation.quantity
	some r in data.protected_ranges
	r.target == input.target.name
	r.start <= input.operation.address
	input.operation.address <= r.end
}

alert_write := count(protected_hits) + count(write_denials) > 0

write_reasons := array.concat(
	sort(write_denials),
	sort([r | some h in protected_hits; r := concat(":", ["protected_range", h])]),
) if count(write_denials) > 0

write_reasons := array.concat(
	array.concat(
		sort([r | some w in open_windows; r := concat(":", ["maintenance_window", w])]),
		sort([r | count(open_windows) == 0; some t in open_tickets; r := concat(":", ["ticket", t])]),
	),
	sort([r | some h in protected_hits; r := concat(":", ["protected_range", h])]),
) if count(write_denials) == 0
