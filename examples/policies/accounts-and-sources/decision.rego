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

import data.interlock.accounts_and_sources

# --- modules ---------------------------------------------------------------

violations := accounts_and_sources.violations

passes := accounts_and_sources.passes

tickets := set()

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

pass_reasons := [r | some p in passes; r := concat(":", [p.id, "pass", p.reason])]

reasons := sort(array.concat(
	[r | some v in violations; r := concat(":", [v.id, status(v), v.reason])],
	pass_reasons,
))

ticket_field(allowed) := {"ticket": min(tickets)} if {
	allowed
	count(tickets) > 0
} else := {}

# Most calls break no rule: they take one of the short ways.
decision := {"allow": true, "alert": false, "reasons": []} if {
	count(violations) == 0
	count(passes) == 0
} else := object.union({"allow": true, "alert": false, "reasons": sort(pass_reasons)}, ticket_field(true)) if {
	count(violations) == 0
} else := object.union(
	{"allow": count(enforced) == 0, "alert": true, "reasons": reasons},
	ticket_field(count(enforced) == 0),
)
