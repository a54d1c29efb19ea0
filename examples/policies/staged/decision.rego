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

# modbus_ranges.violations is set() when its fast path proves the call clean
# and its findings otherwise (modbus_ranges.rego); reading clean and findings
# here spares every call a rule and a union, nearly every call the union
# with an empty set.
violations := change_tickets.violations if modbus_ranges.clean else := modbus_ranges.findings | change_tickets.violations

# The ticket that allows the call, when there is one (a set rule: no
# comprehension to evaluate).
tickets contains change_tickets.ticket

# --- template --------------------------------------------------------------

# interlock.decision, the gateway's builtin, makes the decision of the
# library's convention (../README.md, "The decision") from the modules'
# violations, passes and tickets in one step; data.staging names the rule ids
# that are monitor-only. It gives what the template's rules gave before it
# (policies_test.go keeps them as the reference, TestDecisionBuiltin). The
# first way is the common call, which breaks no rule and passes on nothing:
# it costs two steps, where the builtin would look up the tickets and the
# staging list. (passes first: a call a ticket or window allowed stops there.)
decision := {"allow": true, "alert": false, "reasons": []} if {
	count(passes) == 0
	count(violations) == 0
} else := interlock.decision(violations, passes, tickets, data.staging) if {
	data.staging
} else := interlock.decision(violations, passes, tickets, [])
