package policy

import "sync"

// compileMu serializes Rego compilation in this process. OPA's type checker
// merges object types in place (ast.mergeTypes writes into the dynamic
// properties of a type it found inside an "any"), and some of those types are
// shared between compilers through builtin declarations. Two compilations at
// once — a reload while `policy test` runs in a test binary, or parallel test
// runs — race on them. Compiles are rare and short, so one lock costs nothing.
var compileMu sync.Mutex
