# Approved accounts and approved source workstations, per target.
#
# A call needs an account (principal.user, or one of principal.roles)
# approved for the target and the access kind, and a source (source.name from
# the source inventory, or source.ip in a CIDR block) approved for the same.
# A session open (access "session") needs an account and a source with any
# approval on the target.
#
# A source the inventory does not know (principal.auth "none") never makes a
# state-changing call; what it may read is set by unknown_source_reads:
# "allow", "alert" (allowed, with an alert) or "deny" (anything else denies).
#
# Rules: approved-account, approved-source, unknown-source,
# unknown-source-read. Data: data.accounts_and_sources (see README.md).
package interlock.accounts_and_sources

# --- fast path ---------------------------------------------------------------
#
# Nearly every call comes from a known source with an approved account and
# source: then no rule below is broken, and the decision need not evaluate
# them (their negations and reason texts cost OPA steps on every call). The
# rules run only when a call fails this test; test_fast_path_* in the tests
# check that both give the same decision.
violations := set() if {
	known_source
	account_approved
	source_approved
} else := findings

# For reason texts: a missing field never makes a violation disappear.
access := object.get(input, ["operation", "access"], "")

target := object.get(input, ["target", "name"], "")

user_name := object.get(input, ["principal", "user"], "-")

source_ip := object.get(input, ["source", "ip"], "-")

source_name := object.get(input, ["source", "name"], source_ip)

# Access kinds that change nothing on the target; every other kind
# (write, execute, program, diagnostic) counts as state-changing.
default read_access := {"read", "browse", "subscribe", "session"}

read_access := {a | some a in data.accounts_and_sources.read_access} if data.accounts_and_sources.read_access

default unknown_source_reads := "alert"

unknown_source_reads := data.accounts_and_sources.unknown_source_reads

# A principal without auth counts as an unknown source too.
known_source if object.get(input, ["principal", "auth"], "none") != "none"

account_matches(g) if input.principal.user in g.users

account_matches(g) if {
	some r in input.principal.roles
	r in g.roles
}

source_matches(g) if input.source.name in g.names

source_matches(g) if {
	some c in g.cidrs
	net.cidr_contains(c, input.source.ip)
}

# "*" in access covers every kind; any approval on the target lets one
# connect (access "session").
covers_any(g) if "*" in g.access

covers_any(_) if input.operation.access == "session"

# An approval in the "*" entry (tried first: it holds what most callers,
# the readers, need) or in this target's entry. The targets are read once
# into a local: a data reference with a variable in it costs OPA a lookup in
# the store each time.
account_approved if {
	tg := data.accounts_and_sources.targets
	some t in ["*", input.target.name]
	some g in tg[t].accounts
	input.operation.access in g.access
	account_matches(g)
}

account_approved if {
	tg := data.accounts_and_sources.targets
	some t in ["*", input.target.name]
	some g in tg[t].accounts
	covers_any(g)
	account_matches(g)
}

source_approved if {
	tg := data.accounts_and_sources.targets
	some t in ["*", input.target.name]
	some g in tg[t].sources
	input.operation.access in g.access
	source_matches(g)
}

source_approved if {
	tg := data.accounts_and_sources.targets
	some t in ["*", input.target.name]
	some g in tg[t].sources
	covers_any(g)
	source_matches(g)
}

findings contains {"id": "unknown-source", "reason": concat(":", ["unknown_source", source_ip, access])} if {
	not known_source
	not access in read_access
}

findings contains v if {
	not known_source
	access in read_access
	unknown_source_reads != "allow"
	v := {
		"id": "unknown-source-read",
		"reason": concat(":", ["unknown_source", source_ip, access]),
		"monitor": unknown_source_reads == "alert",
	}
}

findings contains {"id": "approved-account", "reason": concat(":", ["account_not_approved", user_name, target, access])} if {
	known_source
	not account_approved
}

findings contains {"id": "approved-source", "reason": concat(":", ["source_not_approved", source_name, target, access])} if {
	known_source
	not source_approved
}

passes := set()
