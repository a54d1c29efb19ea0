package config

import (
	"net"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"

	"go.yaml.in/yaml/v3"
)

// dialSchemes are the upstream schemes whose URL names a host:port the
// gateway dials, with the port taken when none is given ("" : a port is
// required). Other schemes (rtu://, a serial line) and the choice of scheme
// for a protocol are the engine's to check.
var dialSchemes = map[string]string{
	"tcp":        "",
	"rtuovertcp": "",
	"tls":        "802",  // Modbus/TCP Security's port, as the engine dials it
	"opc.tcp":    "4840", // the OPC UA default, as the upstream client dials it
}

// Upstream is one address a listener sends calls to: its upstream, or the
// upstream of one of its protocol's routes (modbus.routes[].upstream).
type Upstream struct {
	Key string // listeners[0].upstream, listeners[0].modbus.routes[1].upstream
	URL string
	// Host and Port are the address dialed; empty for a serial line.
	Host, Port string
}

// Upstreams are the listener's upstream URLs that are set, with their keys.
// Host and Port are filled for the schemes in dialSchemes whose URL parses.
func (l *Listener) Upstreams() []Upstream {
	var out []Upstream
	add := func(key, raw string) {
		up := Upstream{Key: key, URL: raw}
		if u, err := url.Parse(raw); err == nil {
			if def, ok := dialSchemes[u.Scheme]; ok {
				up.Host, up.Port = u.Hostname(), cmpOr(u.Port(), def)
			}
		}
		out = append(out, up)
	}
	if l.Upstream != "" {
		add(l.key("upstream"), l.Upstream)
	}
	for key, v := range l.routeField("upstream") {
		if v.Kind == yaml.ScalarNode && v.Value != "" {
			add(key, v.Value)
		}
	}
	return out
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// checkUpstreams refuses an upstream address the gateway could never dial
// (no host, no port, a port outside 1..65535) and one that is a listener of
// this configuration: the gateway would connect to itself (or send a
// target's calls through the gateway twice, decided and audited twice).
// The scheme for the protocol is checked by the engine.
func (c *Config) checkUpstreams() error {
	for i := range c.Listeners {
		for _, up := range c.Listeners[i].Upstreams() {
			u, err := url.Parse(up.URL)
			if err != nil {
				return c.errf(0, up.Key, "%q is not a URL: %v", up.URL, unwrapURLError(err))
			}
			def, dials := dialSchemes[u.Scheme]
			if !dials {
				continue
			}
			if up.Host == "" {
				return c.errf(0, up.Key, "%q has no host: want %s://host:port", up.URL, u.Scheme)
			}
			if u.Port() == "" && def == "" {
				return c.errf(0, up.Key, "%q has no port: want %s://host:port", up.URL, u.Scheme)
			}
			if n, err := strconv.Atoi(up.Port); err != nil || n < 1 || n > 65535 {
				return c.errf(0, up.Key, "%q: port %s is not in 1..65535", up.URL, up.Port)
			}
			if j, ok := c.ListenerAt(up.Host, up.Port, nil); ok {
				return c.errf(0, up.Key, "%s is the gateway's own listener %s (listen: %s): the gateway would connect to itself",
					up.URL, c.Listeners[j].key("listen"), c.Listeners[j].Listen)
			}
		}
	}
	return nil
}

// unwrapURLError drops url.Error's repetition of the URL.
func unwrapURLError(err error) error {
	if ue, ok := err.(*url.Error); ok {
		return ue.Err
	}
	return err
}

// ListenerAt reports the listener a connection to host:port on this machine
// would reach: one listening on that address, one on a wildcard address
// when host is an address of this machine (loopback, unspecified, or of one
// of its interfaces), or one on a loopback address when host is
// unspecified. localhost is 127.0.0.1 and ::1 to dial (a dial tries each
// address of the name) but 127.0.0.1 to listen on (Go listens on a name's
// first IPv4 address only). Other listen host names are compared as
// written, or read as their address in resolved (check looks them up).
func (c *Config) ListenerAt(host, port string, resolved map[string]netip.Addr) (int, bool) {
	if port == "0" {
		return 0, false
	}
	ups := dialIPs(host)
	own := sync.OnceValue(func() []netip.Addr {
		as, _ := interfaceAddrs() // none known: no loop is certain
		return as
	})
	for i := range c.Listeners {
		addr, err := ListenAddr(c.Listeners[i].Listen)
		if err != nil {
			continue
		}
		lh, lp, _ := splitHostPort(addr)
		if lp != port || lp == "0" {
			continue
		}
		lh = strings.Trim(lh, "[]")
		la, lIP := listenIP(lh, resolved)
		switch {
		case lh == "" || (lIP && la.IsUnspecified()):
			// net.Listen("tcp", …) of any wildcard (0.0.0.0 too) opens a
			// dual-stack [::] socket, IPV6_V6ONLY off, wherever the system
			// maps IPv4 into IPv6: every address of this machine, both
			// families, reaches it.
			for _, up := range ups {
				if up.IsLoopback() || up.IsUnspecified() || slices.Contains(own(), up) {
					return i, true
				}
			}
		case lIP:
			for _, up := range ups {
				if la == up || (la.IsLoopback() && up.IsUnspecified()) {
					return i, true
				}
			}
		case strings.EqualFold(lh, host):
			return i, true
		}
	}
	return 0, false
}

// dialIPs are the addresses a dial to host tries that are known without
// DNS: the address itself, or both loopbacks for localhost.
func dialIPs(host string) []netip.Addr {
	if strings.EqualFold(host, "localhost") {
		return []netip.Addr{netip.AddrFrom4([4]byte{127, 0, 0, 1}), netip.IPv6Loopback()}
	}
	if a, err := netip.ParseAddr(strings.Trim(host, "[]")); err == nil {
		return []netip.Addr{a.Unmap()}
	}
	return nil
}

// listenIP is the address a listen host is bound to, when known: the
// address itself, 127.0.0.1 for localhost, or the one check resolved.
func listenIP(h string, resolved map[string]netip.Addr) (netip.Addr, bool) {
	if strings.EqualFold(h, "localhost") {
		return netip.AddrFrom4([4]byte{127, 0, 0, 1}), true
	}
	if a, err := netip.ParseAddr(h); err == nil {
		return a.Unmap(), true
	}
	a, ok := resolved[h]
	return a, ok
}

// interfaceAddrs are the addresses of this machine's interfaces; an IPv6
// link-local one twice, with its interface's name and index as zone
// (fe80::1%eth0, fe80::1%2): on another link that address is another host.
var interfaceAddrs = func() ([]netip.Addr, error) {
	ifs, err := net.Interfaces()
	if err != nil {
		return nil, err
	}
	var out []netip.Addr
	for _, ifi := range ifs {
		as, err := ifi.Addrs()
		if err != nil {
			return nil, err
		}
		for _, a := range as {
			n, ok := a.(*net.IPNet)
			if !ok {
				continue
			}
			ip, ok := netip.AddrFromSlice(n.IP)
			switch {
			case !ok:
			case ip.Is6() && ip.IsLinkLocalUnicast():
				out = append(out, ip.WithZone(ifi.Name), ip.WithZone(strconv.Itoa(ifi.Index)))
			default:
				out = append(out, ip.Unmap())
			}
		}
	}
	return out, nil
}
