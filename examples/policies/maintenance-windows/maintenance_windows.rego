# Maintenance windows: state-changing calls only while a window is open.
#
# A window is one-off ({start, end}, RFC 3339) or recurring ({cron,
# duration, tz}: opens at every time the cron expression names in the time
# zone tz, for duration), decided by the gateway's builtin
# interlock.window_open: start inclusive, end exclusive; a recurring window
# lasts duration of elapsed time, across a daylight saving change too.
#
# A window opens only for what it is scoped to:
#   targets  target names ("*": any target), required
#   access   access kinds ("*": any kind), required
#   users, roles  the accounts it opens for (user in users, or one of the
#            roles in roles); with neither, it opens for every account
#
# Access kinds in governed_access (default write, execute, program) need an
# open window; other calls pass this rule.
#
# Rule: maintenance-window. Data: data.maintenance_windows (see README.md).
package interlock.maintenance_windows

cfg := data.maintenance_windows

access := object.get(input, ["operation", "access"], "")

target := object.get(input, ["target", "name"], "")

# Access kinds in governed_access, or the default ones when data has no such
# list. Every rule and comprehension costs OPA a step on every call, so the
# list is read as data gives it (`in` finds an access kind in an array, a set
# or an object's values alike) and not copied into a set.
governed if input.operation.access in data.maintenance_windows.governed_access

governed if {
	not data.maintenance_windows.governed_access
	input.operation.access in {"write", "execute", "program"}
}

# The window names the user or one of the roles, or neither (the last: OPA
# stops at the first body that holds, and most windows name someone).
for_account(w) if input.principal.user in w.users

for_account(w) if {
	some r in input.principal.roles
	r in w.roles
}

for_account(w) if {
	not w.users
	not w.roles
}

# The windows open for this call, as the rule's passes (one for each name).
# The cheap scope checks come first: the builtin is asked only about windows
# that could open for this call, the access kind (the most selective) first.
# A target or access kind is listed when the window names it or "*" (in line
# rather than by a function: a function call costs OPA more than the set
# lookups). The windows are read from data directly and the time once, and
# the access kind from input (governed holds only when it is there), and
# passes is made here rather than from a set of names: a rule, an iteration
# and a builtin call cost OPA a step each.
passes contains {"id": "maintenance-window", "reason": object.get(w, "name", "unnamed")} if {
	governed
	now := time.now_ns()
	accesses := {input.operation.access, "*"}
	targets := {object.get(input, ["target", "name"], ""), "*"}
	windows := data.maintenance_windows.windows
	some w in windows
	some a in w.access
	a in accesses
	some t in w.targets
	t in targets
	for_account(w)
	interlock.window_open(w, now)
}

violations contains {"id": "maintenance-window", "reason": concat(":", ["outside_maintenance_window", target, access])} if {
	governed
	passes == set()
}

# The names of the open windows.
open_windows := {p.reason | some p in passes}
