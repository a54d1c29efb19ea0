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

default governed_access := {"write", "execute", "program"}

governed_access := {a | some a in data.change_tickets.governed_access} if data.change_tickets.governed_access

governed if input.operation.access in governed_access

matching contains t.id if {
	governed
	some t in input.tickets
	t.user == input.principal.user
	target in t.targets
	access in t.access
}

ticket := min(matching) if count(matching) > 0

violations contains {"id": "change-ticket", "reason": concat(":", ["no_matching_ticket", user, target, access])} if {
	governed
	count(matching) == 0
}

passes contains {"id": "change-ticket", "reason": ticket} if ticket
