package config_test

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/interlock-ics/interlock/cmd/interlock/internal/config"
)

// An upstream that reaches one of the gateway's own listeners is refused
// at load, naming its line: a literal address of one of this machine's
// interfaces (either family) on the port of a wildcard listener (Go
// listens on [::] for 0.0.0.0, ::, and an empty host), localhost against
// an IPv6 loopback listener (a dial tries ::1 as well as 127.0.0.1), and
// a loopback address against a listener on localhost. Addresses the
// listener does not take are accepted: another host or port, an interface
// address against a loopback listener, and ::1 against a listener on
// localhost (Go listens on the name's first IPv4 address, 127.0.0.1).
func TestUpstreamOntoOwnListener(t *testing.T) {
	config.SetInterfaceAddrs(t, "127.0.0.1", "192.0.2.7", "::1", "fd00::7", "fe80::7%eth0")
	const loop = "listeners[0].upstream: %s is the gateway's own listener listeners[0].listen (listen: %s): the gateway would connect to itself"
	for _, tc := range []struct {
		name, listen, upstream string
		want                   string // the whole error after FILE:LINE, "" for none
	}{
		{"interface address, IPv4 wildcard", "0.0.0.0:5020", "tcp://192.0.2.7:5020", fmt.Sprintf(loop, "tcp://192.0.2.7:5020", "0.0.0.0:5020")},
		{"interface address, empty host", ":5020", "rtuovertcp://192.0.2.7:5020", fmt.Sprintf(loop, "rtuovertcp://192.0.2.7:5020", ":5020")},
		{"IPv6 interface address, IPv4 wildcard (Go listens on both)", "0.0.0.0:5020", "tcp://[fd00::7]:5020", fmt.Sprintf(loop, "tcp://[fd00::7]:5020", "0.0.0.0:5020")},
		{"IPv4 interface address, IPv6 wildcard", "'[::]:5020'", "tcp://192.0.2.7:5020", fmt.Sprintf(loop, "tcp://192.0.2.7:5020", "[::]:5020")},
		{"IPv4-mapped interface address", "'[::]:5020'", "tcp://[::ffff:192.0.2.7]:5020", fmt.Sprintf(loop, "tcp://[::ffff:192.0.2.7]:5020", "[::]:5020")},
		{"link-local interface address on its link", "'[::]:5020'", "tcp://[fe80::7%25eth0]:5020", fmt.Sprintf(loop, "tcp://[fe80::7%25eth0]:5020", "[::]:5020")},
		{"localhost onto an IPv6 loopback listener", "'[::1]:5020'", "tcp://localhost:5020", fmt.Sprintf(loop, "tcp://localhost:5020", "[::1]:5020")},
		{"loopback onto a listener on localhost", "localhost:5020", "tcp://127.0.0.1:5020", fmt.Sprintf(loop, "tcp://127.0.0.1:5020", "localhost:5020")},
		{"another host", "0.0.0.0:5020", "tcp://192.0.2.8:5020", ""},
		{"link-local interface address on another link", "'[::]:5020'", "tcp://[fe80::7%25eth1]:5020", ""},
		{"another port", "0.0.0.0:5020", "tcp://192.0.2.7:502", ""},
		{"interface address, loopback listener", "127.0.0.1:5020", "tcp://192.0.2.7:5020", ""},
		{"IPv6 loopback, listener on localhost", "localhost:5020", "tcp://[::1]:5020", ""},
		{"tls:// without a port is port 802", "0.0.0.0:802", "tls://192.0.2.7", fmt.Sprintf(loop, "tls://192.0.2.7", "0.0.0.0:802")},
		{"tls:// without a port, listener on another port", "0.0.0.0:5020", "tls://192.0.2.7", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body := strings.Replace(good, "    listen: 127.0.0.1:5020\n    upstream: tcp://127.0.0.1:502\n",
				"    listen: "+tc.listen+"\n    upstream: "+tc.upstream+"\n", 1)
			p := write(t, body)
			_, err := config.Load(p)
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("load: %v, want no error", err)
			case tc.want != "" && (err == nil || err.Error() != p+":7: "+tc.want):
				t.Errorf("load: %v\nwant %s:7: %s", err, p, tc.want)
			}
		})
	}
}

// The addresses Load takes as this machine's are those of its interfaces,
// an IPv6 link-local one with its interface's name as zone.
func TestInterfaceAddrs(t *testing.T) {
	got, err := config.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	ifs, err := net.Interfaces()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, ifi := range ifs {
		as, err := ifi.Addrs()
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range as {
			ip := netip.MustParsePrefix(a.String()).Addr().Unmap()
			if ip.Is6() && ip.IsLinkLocalUnicast() {
				ip = ip.WithZone(ifi.Name)
			}
			if !slices.Contains(got, ip) {
				t.Errorf("%s of %s is not among %v", ip, ifi.Name, got)
			}
			n++
		}
	}
	if n == 0 {
		t.Fatal("this machine reports no interface address, not even a loopback one")
	}
}
