package gateway

import (
	"fmt"
	"slices"
	"sync"

	"github.com/rs/zerolog"
)

// EngineSpec is what an engine is built from: one configured listener.
type EngineSpec struct {
	Listener string // listener name, the default target name
	Upstream string // upstream URL as configured
	Listen   string // listen address as configured (opc.tcp://host:port or host:port)
	// BaseDir is the directory of the configuration file: relative paths in
	// the protocol options (a PKI folder, a users file) are relative to it.
	BaseDir  string
	Target   Target
	Limits   Limits
	Pipeline *Pipeline
	// Options decodes the listener's protocol section (such as `modbus:`)
	// into the engine's own options struct, rejecting unknown keys. It is
	// nil when the section is absent.
	Options func(into any) error
	Log     zerolog.Logger
}

// NewEngine builds an engine for one listener; it validates the protocol
// options and upstream URL and returns an error naming what is wrong.
type NewEngine func(spec EngineSpec) (Engine, error)

var (
	registryMu sync.RWMutex
	registry   = map[string]NewEngine{}
)

// Register makes a protocol available to listeners. Engines call it from
// init; registering a name twice panics.
func Register(protocol string, f NewEngine) {
	registryMu.Lock()
	defer registryMu.Unlock()
	if _, dup := registry[protocol]; dup {
		panic(fmt.Sprintf("gateway: protocol %q registered twice", protocol))
	}
	registry[protocol] = f
}

// Lookup returns the engine constructor for a protocol.
func Lookup(protocol string) (NewEngine, bool) {
	registryMu.RLock()
	defer registryMu.RUnlock()
	f, ok := registry[protocol]
	return f, ok
}

// Protocols lists the registered protocols, sorted.
func Protocols() []string {
	registryMu.RLock()
	defer registryMu.RUnlock()
	var p []string
	for k := range registry {
		p = append(p, k)
	}
	slices.Sort(p)
	return p
}
