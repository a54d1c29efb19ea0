package interlock.accounts_and_sources_test

import data.interlock

# --- fixtures ----------------------------------------------------------------

cfg := {
	"unknown_source_reads": "alert",
	"targets": {
		"*": {
			"accounts": [{"roles": ["operator", "engineer"], "access": ["read"]}],
			"sources": [{"names": ["hmi-line1", "ews-alice"], "access": ["read"]}],
		},
		"plc1": {
			"accounts": [
				{"users": ["alice"], "roles": ["engineer"], "access": ["write", "diagnostic"]},
				{"users": ["carol"], "access": ["program"]},
			],
			"sources": [
				{"names": ["ews-alice"], "access": ["write", "diagnostic"]},
				{"cidrs": ["10.0.6.0/28"], "access": ["program"]},
			],
		},
		"drives": {
			"accounts": [{"roles": ["drive-engineer"], "access": ["*"]}],
			"sources": [{"cidrs": ["10.0.7.0/24"], "access": ["*"]}],
		},
	},
}

alice := {"user": "alice", "auth": "inventory", "roles": ["engineer"]}

bob := {"user": "bob", "auth": "inventory", "roles": ["operator"]}

carol := {"user": "carol", "auth": "inventory", "roles": []}

dave := {"user": "dave", "auth": "inventory", "roles": ["engineer"]}

nobody := {"auth": "none", "roles": []}

ews_alice := {"ip": "10.0.5.7", "port": 50123, "name": "ews-alice", "owner": "alice"}

hmi := {"ip": "10.0.20.4", "port": 40001, "name": "hmi-line1"}

laptop := {"ip": "10.0.9.9", "port": 40002, "name": "laptop-7"}

stranger := {"ip": "10.9.9.9", "port": 40003}

call(principal, source, target, access) := {
	"protocol": "modbus",
	"principal": principal,
	"source": source,
	"target": {"name": target, "upstream": "tcp://10.0.0.20:502", "unit_id": 1},
	"operation": {"function": function_for[access], "access": access, "code": 0},
	"tickets": [],
}

function_for := {
	"read": "read_holding_registers",
	"write": "write_single_register",
	"diagnostic": "diagnostics",
	"program": "unknown",
	"execute": "call",
	"session": "session.open",
}

decide(c) := decide_cfg(c, cfg)

decide_cfg(c, conf) := d if {
	d := interlock.decision with input as c with data.accounts_and_sources as conf
}

with_cfg(patch) := object.union(cfg, patch)

# --- approved accounts and sources --------------------------------------------

test_engineer_writes_from_approved_workstation if {
	d := decide(call(alice, ews_alice, "plc1", "write"))
	d.allow
	not d.alert
	d.reasons == []
}

test_operator_reads_from_hmi if {
	d := decide(call(bob, hmi, "plc1", "read"))
	d.allow
	not d.alert
}

test_operator_may_not_write if {
	d := decide(call(bob, ews_alice, "plc1", "write"))
	not d.allow
	d.alert
	d.reasons == ["approved-account:enforced:account_not_approved:bob:plc1:write"]
}

test_engineer_from_unapproved_workstation_denied if {
	d := decide(call(alice, laptop, "plc1", "write"))
	not d.allow
	d.reasons == ["approved-source:enforced:source_not_approved:laptop-7:plc1:write"]
}

test_workstation_approved_for_reads_only_cannot_write if {
	d := decide(call(alice, hmi, "plc1", "write"))
	not d.allow
	d.reasons == ["approved-source:enforced:source_not_approved:hmi-line1:plc1:write"]
}

test_both_violations_reported_sorted if {
	d := decide(call(bob, laptop, "plc1", "write"))
	not d.allow
	d.reasons == [
		"approved-account:enforced:account_not_approved:bob:plc1:write",
		"approved-source:enforced:source_not_approved:laptop-7:plc1:write",
	]
}

test_role_approval_covers_other_users_with_the_role if {
	d := decide(call(dave, ews_alice, "plc1", "write"))
	d.allow
}

# Modbus/TCP Security: the role of the client certificate is principal.roles,
# and a certificate without the role extension has none (no default).
test_certificate_role_approves_like_any_role if {
	cert := {"user": "frank", "auth": "certificate", "roles": ["engineer"], "cert_thumbprint": "ab12"}
	decide(call(cert, ews_alice, "plc1", "write")).allow
}

test_certificate_without_role_is_no_account if {
	cert := {"user": "frank", "auth": "certificate", "cert_thumbprint": "ab12"}
	d := decide(call(cert, ews_alice, "plc1", "write"))
	not d.allow
	d.reasons == ["approved-account:enforced:account_not_approved:frank:plc1:write"]
}

test_user_approval_is_per_access_kind if {
	src := {"ip": "10.0.6.5", "port": 40000}
	decide(call(carol, src, "plc1", "program")).allow
	d := decide(call(carol, src, "plc1", "write"))
	not d.allow
	"approved-account:enforced:account_not_approved:carol:plc1:write" in d.reasons
}

test_cidr_source_approval if {
	decide(call(carol, {"ip": "10.0.6.15", "port": 1}, "plc1", "program")).allow
	d := decide(call(carol, {"ip": "10.0.6.16", "port": 1}, "plc1", "program"))
	not d.allow
	d.reasons == ["approved-source:enforced:source_not_approved:10.0.6.16:plc1:program"]
}

test_wildcard_access if {
	eng := {"user": "erin", "auth": "inventory", "roles": ["drive-engineer"]}
	every a in ["read", "write", "execute", "program", "diagnostic"] {
		decide(call(eng, {"ip": "10.0.7.3", "port": 1}, "drives", a)).allow
	}
}

test_approval_for_one_target_does_not_cover_another if {
	d := decide(call(alice, ews_alice, "drives", "write"))
	not d.allow
	count(d.reasons) == 2
}

test_star_target_covers_unlisted_targets_for_what_it_lists if {
	decide(call(bob, hmi, "plc9", "read")).allow
	not decide(call(alice, ews_alice, "plc9", "write")).allow
}

test_principal_without_user_matches_by_role if {
	hmi_account := {"auth": "inventory", "roles": ["operator"]}
	decide(call(hmi_account, hmi, "plc1", "read")).allow
	d := decide(call(hmi_account, hmi, "plc1", "write"))
	"approved-account:enforced:account_not_approved:-:plc1:write" in d.reasons
}

# --- session open ------------------------------------------------------------

test_session_open_needs_any_approval_on_the_target if {
	src := {"ip": "10.0.6.5", "port": 40000}
	decide(call(carol, src, "plc1", "session")).allow # carol may only program plc1
	d := decide(call(carol, src, "drives", "session"))
	not d.allow
	d.reasons == [
		"approved-account:enforced:account_not_approved:carol:drives:session",
		"approved-source:enforced:source_not_approved:10.0.6.5:drives:session",
	]
}

# --- unknown sources -----------------------------------------------------------

test_unknown_source_write_denied if {
	d := decide(call(nobody, stranger, "plc1", "write"))
	not d.allow
	d.alert
	d.reasons == ["unknown-source:enforced:unknown_source:10.9.9.9:write"]
}

test_unknown_source_state_changing_denied_even_when_reads_allowed if {
	every a in ["write", "execute", "program", "diagnostic"] {
		d := decide_cfg(call(nobody, stranger, "plc1", a), with_cfg({"unknown_source_reads": "allow"}))
		not d.allow
	}
}

test_unknown_source_read_alerts_by_default if {
	d := decide(call(nobody, stranger, "plc1", "read"))
	d.allow
	d.alert
	d.reasons == ["unknown-source-read:monitor:unknown_source:10.9.9.9:read"]
}

test_unknown_source_read_alerts_when_not_configured if {
	d := interlock.decision with input as call(nobody, stranger, "plc1", "read")
		with data.accounts_and_sources as object.remove(cfg, ["unknown_source_reads"])
	d.allow
	d.alert
}

test_unknown_source_read_allowed_silently if {
	d := decide_cfg(call(nobody, stranger, "plc1", "read"), with_cfg({"unknown_source_reads": "allow"}))
	d.allow
	not d.alert
	d.reasons == []
}

test_unknown_source_read_denied if {
	d := decide_cfg(call(nobody, stranger, "plc1", "read"), with_cfg({"unknown_source_reads": "deny"}))
	not d.allow
	d.reasons == ["unknown-source-read:enforced:unknown_source:10.9.9.9:read"]
}

test_unknown_source_read_setting_typo_denies if {
	d := decide_cfg(call(nobody, stranger, "plc1", "read"), with_cfg({"unknown_source_reads": "alrt"}))
	not d.allow
}

test_unknown_source_session_open_follows_read_setting if {
	d := decide(call(nobody, stranger, "plc1", "session"))
	d.allow
	d.alert
	not decide_cfg(call(nobody, stranger, "plc1", "session"), with_cfg({"unknown_source_reads": "deny"})).allow
}

test_read_access_kinds_are_configurable if {
	kinds := ["read", "browse", "subscribe", "session", "diagnostic"]
	d := decide_cfg(call(nobody, stranger, "plc1", "diagnostic"), with_cfg({"read_access": kinds}))
	d.allow
	d.reasons == ["unknown-source-read:monitor:unknown_source:10.9.9.9:diagnostic"]
}

test_inventory_name_is_not_trusted_when_auth_is_none if {
	# A source the inventory does not know carries no name; if one appeared,
	# auth "none" still decides.
	d := decide(call(nobody, ews_alice, "plc1", "write"))
	not d.allow
	d.reasons == ["unknown-source:enforced:unknown_source:10.0.5.7:write"]
}

# --- fail closed ---------------------------------------------------------------

test_call_without_operation_or_target_denied if {
	d := decide({"protocol": "modbus", "principal": alice, "source": ews_alice})
	not d.allow
}

test_no_data_denies_state_changing_calls if {
	d := interlock.decision with input as call(alice, ews_alice, "plc1", "write") with data.accounts_and_sources as {}
	not d.allow
}

# --- staging -------------------------------------------------------------------

test_staged_source_rule_alerts_without_blocking if {
	d := decide(call(alice, laptop, "plc1", "write")) with data.staging as ["approved-source"]
	d.allow
	d.alert
	d.reasons == ["approved-source:monitor:source_not_approved:laptop-7:plc1:write"]
}

test_staging_one_rule_leaves_the_other_enforced if {
	d := decide(call(bob, laptop, "plc1", "write")) with data.staging as ["approved-source"]
	not d.allow
	d.reasons == [
		"approved-account:enforced:account_not_approved:bob:plc1:write",
		"approved-source:monitor:source_not_approved:laptop-7:plc1:write",
	]
}

# --- the shipped data.json -----------------------------------------------------

test_shipped_data if {
	interlock.decision.allow with input as call(alice, ews_alice, "plc1", "write")
	interlock.decision.allow with input as call(bob, hmi, "plc1", "read")
	interlock.decision.allow with input as call(carol, {"ip": "10.0.6.3", "name": "ews-carol"}, "plc1", "program")
	not interlock.decision.allow with input as call(bob, hmi, "plc1", "write")
	not interlock.decision.allow with input as call(nobody, stranger, "plc1", "write")
	d := interlock.decision with input as call(nobody, stranger, "plc1", "read")
	d.allow
	d.alert
}

# --- the fast path -----------------------------------------------------------------
#
# violations is empty without evaluating the rules when the source is known
# and account and source are approved (accounts_and_sources.rego, "fast
# path"); otherwise it is what the rules find. Either way it must be what the
# rules alone find, for approved calls and for each way of breaking a rule.

fast_path_calls := [
	call(alice, ews_alice, "plc1", "write"),
	call(alice, ews_alice, "plc1", "read"),
	call(bob, hmi, "plc1", "read"),
	call(bob, hmi, "plc9", "read"),
	call(carol, {"ip": "10.0.6.3", "port": 1, "name": "ews-carol"}, "plc1", "program"),
	call({"user": "erin", "auth": "inventory", "roles": ["drive-engineer"]}, {"ip": "10.0.7.1", "port": 1, "name": "ews-erin"}, "drives", "write"),
	call(bob, hmi, "plc1", "session"),
	call(dave, ews_alice, "plc1", "write"),
	call(bob, hmi, "plc1", "write"),
	call(dave, {"ip": "10.0.7.1", "port": 1, "name": "ews-dave"}, "drives", "write"),
	call(alice, laptop, "plc1", "write"),
	call(alice, hmi, "plc1", "write"),
	call(carol, ews_alice, "plc1", "program"),
	call(bob, laptop, "drives", "read"),
	call(nobody, stranger, "plc1", "read"),
	call(nobody, stranger, "plc1", "write"),
	call({"user": "alice", "roles": ["engineer"]}, ews_alice, "plc1", "write"),
	object.remove(call(alice, ews_alice, "plc1", "write"), ["target"]),
	object.remove(call(alice, ews_alice, "plc1", "write"), ["source"]),
]

test_fast_path_gives_what_the_rules_find if {
	every c in fast_path_calls {
		fast := interlock.accounts_and_sources.violations with input as c with data.accounts_and_sources as cfg
		rules := interlock.accounts_and_sources.findings with input as c with data.accounts_and_sources as cfg
		fast == rules
	}
}

test_fast_path_taken_by_approved_calls if {
	every c in array.slice(fast_path_calls, 0, 8) {
		count(interlock.accounts_and_sources.findings) == 0 with input as c with data.accounts_and_sources as cfg
		interlock.decision == {"allow": true, "alert": false, "reasons": []} with input as c with data.accounts_and_sources as cfg
	}
	every c in array.slice(fast_path_calls, 8, 100) {
		count(interlock.accounts_and_sources.violations) > 0 with input as c with data.accounts_and_sources as cfg
	}
}
