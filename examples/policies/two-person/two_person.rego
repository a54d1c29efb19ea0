# Two-person rule for program download.
#
# A call whose access kind is in data.two_person.access (default: program;
# add execute to cover method calls too) needs an open change ticket that
# matches it (its user is the caller, the call's target and access kind are
# among its targets and access kinds; see change-tickets) and that someone
# other than its opener approved (`interlock ticket approve`): approvals is
# not empty and does not hold opened_by. A ticket whose opener appears among
# its approvals is treated as self-approved and never counts.
#
# With approver_other_than_user (data, default false), an approval by the
# ticket's own user does not count either: the person who downloads the
# program cannot be the only one who approved it.
#
# The decision names the ticket that allowed the call; when several do, the
# smallest id.
#
# Rule: two-person. Data: data.two_person (see README.md).
package interlock.two_person

access := object.get(input, ["operation", "access"], "")

target := object.get(input, ["target", "name"], "")

user := object.get(input, ["principal", "user"], "-")

# Access kinds in data.two_person.access, or program when data has no such
# list. Every rule and comprehension costs OPA a step on every call, so the
# list is read as data gives it (`in` finds an access kind in an array, a set
# or an object's values alike) and not copied into a set.
governed if input.operation.access in data.two_person.access

governed if {
	not data.two_person.access
	input.operation.access == "program"
}

default approver_other_than_user := false

approver_other_than_user := data.two_person.approver_other_than_user

candidates contains t if {
	governed
	some t in input.tickets
	t.user == input.principal.user
	target in t.targets
	access in t.access
}

self_approved(t) if t.opened_by in t.approvals

counts(t, a) if {
	a != t.opened_by
	not user_excluded(t, a)
}

user_excluded(t, a) if {
	approver_other_than_user == true
	a == t.user
}

approvers(t) := {a | some a in t.approvals; counts(t, a)}

approved(t) if {
	not self_approved(t)
	count(approvers(t)) > 0
}

approved_ids contains t.id if {
	some t in candidates
	approved(t)
}

ticket := min(approved_ids) if count(approved_ids) > 0

# Why no ticket allows the call: no matching ticket, or what is wrong with
# each one that matches.
violations contains {"id": "two-person", "reason": concat(":", ["no_ticket", user, target, access])} if {
	governed
	count(candidates) == 0
}

violations contains {"id": "two-person", "reason": concat(":", [problem(t), t.id])} if {
	governed
	count(approved_ids) == 0
	some t in candidates
}

problem(t) := "ticket_self_approved" if {
	self_approved(t)
} else := "ticket_not_approved" if {
	count(object.get(t, "approvals", [])) == 0
} else := "ticket_approved_only_by_its_user"

# governed first: a call that needs no ticket never looks for one.
passes contains {"id": "two-person", "reason": sprintf("%s:approved_by=%s", [ticket, concat(",", sort(approvers(t)))])} if {
	governed
	some t in candidates
	t.id == ticket
}
