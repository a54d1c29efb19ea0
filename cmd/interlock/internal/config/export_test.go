package config

import (
	"net/netip"
	"testing"
)

// SetInterfaceAddrs pins the addresses of this machine's interfaces for
// the test (a link-local one with its interface as zone: fe80::7%eth0).
func SetInterfaceAddrs(t testing.TB, addrs ...string) {
	t.Helper()
	as := make([]netip.Addr, len(addrs))
	for i, a := range addrs {
		as[i] = netip.MustParseAddr(a)
	}
	old := interfaceAddrs
	interfaceAddrs = func() ([]netip.Addr, error) { return as, nil }
	t.Cleanup(func() { interfaceAddrs = old })
}

// InterfaceAddrs are the addresses Load takes as this machine's.
func InterfaceAddrs() ([]netip.Addr, error) { return interfaceAddrs() }
