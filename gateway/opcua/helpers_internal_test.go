package opcua

import "github.com/interlock-ics/interlock/gateway"

// freeLogins is the failed logins a source address may have before the
// engine's gateway.FailureLimiter holds it back.
const freeLogins = gateway.FreeFailures
