# The decision, from the library's decision template (../README.md): only the
# "modules" part differs between the policies of examples/policies.
#
#   allow   no violation of an enforced rule
#   alert   any violation, enforced or monitor-only
#   reasons "<rule-id>:enforced:<reason>" and "<rule-id>:monitor:<reason>"
#           for violations, "<rule-id>:pass:<reason>" for what a rule passed
#           on (a window, a ticket, a vendor code), sorted
#   ticket  the change ticket that allowed the call, when one did
#
# data.staging lists the rule ids that are monitor-only: their violations
# alert without blocking. A module marks a violation monitor-only itself
# with "monitor": true (a configured alert-only case).
package interlock

import data.interlock.change_tickets
import data.interlock.modbus_ranges

# Only change tickets pass anything here (modbus_ranges.passes is always
# empty): their passes are the decision's, imported rather than united with
# an empty set, which would cost a rule and a union on every call. Passes of
# two modules that pass on something are united with a rule, as violations
# are below.
import data.interlock.change_tickets.passes

# --- modules ---------------------------------------------------------------

violations := modbus_ranges.violations | change_tickets.violations

# The ticket that allows the call, when there is one (a set rule: no
# comprehension to evaluate).
tickets contains change_tickets.ticket

# --- template --------------------------------------------------------------

staging := {id | some id in data.staging}

monitored(v) if v.id in staging

monitored(v) if v.monitor == true

enforced contains v if {
	some v in violations
	not monitored(v)
}

status(v) := "monitor" if {
	monitored(v)
} else := "enforced"

pass_reasons := [concat(":", [p.id, "pass", p.reason]) | some p in passes]

reasons := sort(array.concat(
	[concat(":", [v.id, status(v), v.reason]) | some v in violations],
	pass_reasons,
))

ticket_field(allowed) := {"ticket": min(tickets)} if {
	allowed
	count(tickets) > 0
} else := {}

# Nearly every call takes one of the short ways, which give what the last,
# general way would: no violation and nothing passed on; no violation, what
# rules passed on and the ticket that allowed the call, or no ticket; every
# violation enforced (nothing staged, no module marked one monitor-only).
# OPA spends a step on every rule, function call and comprehension it
# evaluates, so the short ways write out what they need (the pass reasons,
# the ticket) instead of calling the helpers above.
decision := {"allow": true, "alert": false, "reasons": []} if {
	count(passes) == 0
	count(violations) == 0
} else := {"allow": true, "alert": false, "reasons": sort([concat(":", [p.id, "pass", p.reason]) | some p in passes]), "ticket": t} if {
	t := min(tickets)
	count(violations) == 0
} else := {"allow": true, "alert": false, "reasons": sort([concat(":", [p.id, "pass", p.reason]) | some p in passes])} if {
	count(violations) == 0
} else := {"allow": false, "alert": true, "reasons": sort(array.concat(
	[concat(":", [v.id, "enforced", v.reason]) | some v in violations],
	[concat(":", [p.id, "pass", p.reason]) | some p in passes],
))} if {
	not data.staging
	not monitor_flagged
} else := object.union(
	{"allow": count(enforced) == 0, "alert": true, "reasons": reasons},
	ticket_field(count(enforced) == 0),
)

monitor_flagged if {
	some v in violations
	object.get(v, "monitor", false) == true
}
