package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/interlock-ics/interlock/cmd/interlock/internal/config"
)

// hostTimeout bounds check's lookups of the hosts the gateway sends to
// (SIEM receivers, the decision log service): the machine that runs check
// may have no DNS, and check must not hang on it.
const hostTimeout = 2 * time.Second

// sendHost is a host the running gateway sends to, by the key that names it.
type sendHost struct {
	key, host string
	who       string // what sends to it, for the warning
	then      string // what happens at run time while the host does not resolve
	// port is set for a listener's upstream: an address the name resolves
	// to here may be the gateway's own listener on it.
	port string
}

// sendHosts are the hosts of the audit.ship receivers and of
// policy.decision_logs, but literal IP addresses (nothing to look up).
func sendHosts(cfg *config.Config) []sendHost {
	var hs []sendHost
	add := func(h sendHost) {
		if _, err := netip.ParseAddr(h.host); h.host != "" && err != nil {
			hs = append(hs, h)
		}
	}
	for i, s := range cfg.Audit.Ship {
		h := sendHost{who: "the shipper", then: "the shipper would retry with back-off and deliver nothing until it does"}
		switch s.Type {
		case config.ShipSyslog:
			h.key = fmt.Sprintf("audit.ship[%d].address", i)
			h.host, _, _ = net.SplitHostPort(s.Address)
		case config.ShipHTTP:
			h.key = fmt.Sprintf("audit.ship[%d].url", i)
			if u, err := url.Parse(s.URL); err == nil {
				h.host = u.Hostname()
			}
		}
		add(h)
	}
	for i := range cfg.Listeners {
		l := &cfg.Listeners[i]
		for _, up := range l.Upstreams() {
			add(sendHost{key: up.Key, host: up.Host, port: up.Port, who: "listener " + l.Name,
				then: "the gateway cannot reach it, and every call through listener " + l.Name + " fails until it does"})
		}
	}
	if d := cfg.Policy.DecisionLogs; d != nil {
		h := sendHost{key: "policy.decision_logs.url", who: "the decision log",
			then: "decisions would be held (up to max_events, then the oldest dropped) and uploaded only once it does"}
		if u, err := url.Parse(d.URL); err == nil {
			h.host = u.Hostname()
		}
		add(h)
	}
	return hs
}

// warnHosts warns about each host the gateway sends to (audit.ship
// receivers, policy.decision_logs, listeners' upstreams) that does not
// resolve here: at run time nothing reaches it, and the gateway only logs
// "no such host". A warning, not an error: check may run on a build
// machine that does not see the site's DNS. An upstream that reaches one
// of the gateway's own listeners once names are looked up (the upstream's
// host, or the listener's) is warned of too; without DNS it is an error of
// the configuration.
func warnHosts(cfg *config.Config, w io.Writer, lookup func(ctx context.Context, host string) ([]string, error)) {
	hs := sendHosts(cfg)
	names := listenNames(cfg)
	if len(hs)+len(names) == 0 {
		return
	}
	hosts := names
	for _, h := range hs {
		hosts = append(hosts, h.host)
	}
	ctx, cancel := context.WithTimeout(context.Background(), hostTimeout)
	defer cancel()
	errs := make([]error, len(hosts))
	addrs := make([][]string, len(hosts))
	var wg sync.WaitGroup
	for i, h := range hosts {
		wg.Go(func() { addrs[i], errs[i] = lookup(ctx, h) })
	}
	wg.Wait()
	// A listen name that does not resolve is the listen probe's error.
	resolved := map[string]netip.Addr{}
	for i, n := range names {
		if a, ok := listenedAddr(addrs[i]); errs[i] == nil && ok {
			resolved[n] = a
		}
	}
	errs, addrs = errs[len(names):], addrs[len(names):]
	for i, h := range hs {
		err := errs[i]
		var de *net.DNSError
		switch {
		case err == nil:
			warnLoop(w, cfg, h, addrs[i], resolved)
			continue
		case errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &de) && de.IsTimeout):
			warnAt(w, cfg, h.key, "host %s: no answer from DNS within %v, not checked (%s cannot deliver while its host does not resolve)", h.host, hostTimeout, h.who)
			continue
		case errors.As(err, &de):
			err = errors.New(de.Err)
		}
		warnAt(w, cfg, h.key, "host %s does not resolve here (%v): %s", h.host, err, h.then)
	}
	warnLiteralLoops(w, cfg, resolved)
}

// warnLoop warns when an upstream's host name resolves here to an address
// of one of the gateway's listeners: the gateway would connect to itself.
func warnLoop(w io.Writer, cfg *config.Config, h sendHost, addrs []string, resolved map[string]netip.Addr) {
	if h.port == "" {
		return
	}
	for _, a := range addrs {
		if j, ok := cfg.ListenerAt(a, h.port, resolved); ok {
			warnAt(w, cfg, h.key, "host %s resolves here to %s: port %s there is the gateway's own listener %s: the gateway would connect to itself",
				h.host, a, h.port, listenerDesc(cfg, j, resolved))
			return
		}
	}
}

// warnLiteralLoops warns of an upstream written as an address that is the
// one a listen host name resolves to here (on the same port).
func warnLiteralLoops(w io.Writer, cfg *config.Config, resolved map[string]netip.Addr) {
	if len(resolved) == 0 {
		return
	}
	for i := range cfg.Listeners {
		for _, up := range cfg.Listeners[i].Upstreams() {
			if _, err := netip.ParseAddr(up.Host); err != nil {
				continue // a name: warnLoop's
			}
			if j, ok := cfg.ListenerAt(up.Host, up.Port, resolved); ok {
				warnAt(w, cfg, up.Key, "%s is the gateway's own listener %s: the gateway would connect to itself", up.URL, listenerDesc(cfg, j, resolved))
			}
		}
	}
}

// listenNames are the listen hosts that are names, but localhost (config
// reads it as 127.0.0.1): check looks them up to find what they bind.
func listenNames(cfg *config.Config) []string {
	var names []string
	for i := range cfg.Listeners {
		h, p := listenHost(&cfg.Listeners[i])
		if _, err := netip.ParseAddr(h); h == "" || p == "0" || err == nil || strings.EqualFold(h, "localhost") || slices.Contains(names, h) {
			continue
		}
		names = append(names, h)
	}
	return names
}

// listenHost is the host and port of the listener's listen address.
func listenHost(l *config.Listener) (host, port string) {
	addr, _ := config.ListenAddr(l.Listen) // checked by Load
	host, port, _ = net.SplitHostPort(addr)
	return host, port
}

// listenedAddr is the address a listener on a name with these addresses
// binds: net.Listen takes the first IPv4 address, else the first.
func listenedAddr(addrs []string) (netip.Addr, bool) {
	var first netip.Addr
	for _, s := range addrs {
		a, err := netip.ParseAddr(s)
		if err != nil {
			continue
		}
		if a.Unmap().Is4() {
			return a.Unmap(), true
		}
		if !first.IsValid() {
			first = a
		}
	}
	return first, first.IsValid()
}

// listenerDesc names listener j for a loop warning, with the address its
// listen host name resolves to here when it is one.
func listenerDesc(cfg *config.Config, j int, resolved map[string]netip.Addr) string {
	l := &cfg.Listeners[j]
	h, _ := listenHost(l)
	if a, ok := resolved[h]; ok {
		return fmt.Sprintf("%s (listen: %s, which resolves here to %s)", l.Key("listen"), l.Listen, a)
	}
	return fmt.Sprintf("%s (listen: %s)", l.Key("listen"), l.Listen)
}

// warnAt prints a check warning that names the file, line and key as a
// configuration error does: FILE:LINE: warning: KEY: message.
func warnAt(w io.Writer, cfg *config.Config, key, format string, args ...any) {
	printAt(w, cfg, "warning", key, format, args...)
}

// noteAt prints what check could not check, and why, as warnAt prints a
// warning: FILE:LINE: note: KEY: message.
func noteAt(w io.Writer, cfg *config.Config, key, format string, args ...any) {
	printAt(w, cfg, "note", key, format, args...)
}

func printAt(w io.Writer, cfg *config.Config, level, key, format string, args ...any) {
	var e *config.Error
	if !errors.As(cfg.Errorf(key, format, args...), &e) {
		return
	}
	loc := e.File
	if e.Line > 0 {
		loc += ":" + strconv.Itoa(e.Line)
	}
	fmt.Fprintf(w, "%s: %s: %s: %s\n", loc, level, e.Key, e.Msg)
}
