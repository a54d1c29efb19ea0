# Change tickets: state-changing calls only under a matching open ticket.
#
# The gateway gives the policy the tickets open at the call's time as
# input.tickets (`interlock ticket open --user alice --target plc1 --access
# write --for 2h --reason CHG-1234`); an expired or closed ticket is simply
# not there. A ticket matches a call when its user is the caller
# (principal.user), the call's target is one of its targets and the call's
# access kind one of its access kinds. The decision names the matching
# ticket ("ticket"), which the audit record keeps; when several match, the
# smallest id.
#
# Access kinds in governed_access (default write, execute, program) need a
# ticket; other calls pass this rule.
#
# Rule: change-ticket. Data: data.change_tickets (see README.md).
package interlock.change_tickets

access := object.get(input, ["operation", "access"], "")

target := object.get(input, ["target", "name"], "")

user := object.get(input, ["principal", "user"], "-")

# Access kinds in data.change_tickets.governed_access, or the default ones
# when data has no such list. Rules and comprehensions cost OPA a step each
# on every call, so the list is read as data gives it (`in` finds an access
# kind in an array, a set or an object's values alike) and there is no
# separate governed_access rule.
governed if input.operation.access in data.change_tickets.governed_access

governed if {
	not data.change_tickets.governed_access
	input.operation.access in {"write", "execute", "program"}
}

# The smallest id of the tickets that match; undefined when none does (a
# call without a target name matches no ticket).
ticket := min({t.id |
	some t in input.tickets
	t.user == input.principal.user
	input.target.name in t.targets
	input.operation.access in t.access
}) if governed

violations contains {"id": "change-ticket", "reason": concat(":", ["no_matching_ticket", user, target, access])} if {
	governed
	not ticket
}

# governed first: a call that needs no ticket never looks for one. (ticket is
# itself defined only for a governed call; the body names governed alone
# because a second expression costs every ticketed call more than it saves.)
passes contains {"id": "change-ticket", "reason": ticket} if governed
