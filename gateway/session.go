package gateway

import (
	"crypto/rand"
	"encoding/hex"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/rs/zerolog"
)

// Session is everything the gateway knows about one client connection. It is
// created by the listener, filled in by the engine (security policy, user),
// and passed by pointer through the pipeline. Fields are written only by the
// session's own goroutine.
type Session struct {
	ID       string
	Started  time.Time
	Gateway  string // gateway.id from the configuration
	Listener string
	Protocol string

	Source    Source
	Principal Principal
	Target    Target // the listener's default target

	SecurityPolicy string // OPC UA; empty for Modbus TCP
	SecurityMode   string
	// Resumed counts the times the session moved to a new connection (OPC
	// UA: activated on a new secure channel after its own closed).
	Resumed int

	// Log is the operational logger, already carrying the session fields.
	Log zerolog.Logger

	// Cache is a slot for the policy engine to keep per-session state (such
	// as the session part of the policy input, built once). The core does not
	// look inside.
	Cache any
}

// NewID returns a random 128-bit identifier in hex, from crypto/rand.
// Every call and decision takes one, so crypto/rand is read 4 KiB at a
// time rather than 16 bytes per identifier; no byte is handed out twice.
func NewID() string {
	var b [16]byte
	idPool.Lock()
	if idPool.n < len(b) {
		_, _ = rand.Read(idPool.buf[:]) // never fails on supported platforms (Go 1.24+)
		idPool.n = len(idPool.buf)
	}
	idPool.n -= len(b)
	copy(b[:], idPool.buf[idPool.n:])
	idPool.Unlock()
	return hex.EncodeToString(b[:])
}

var idPool struct {
	sync.Mutex
	buf [4096]byte
	n   int // unused bytes left at the start of buf
}

// SourceOf returns the IP and port of a network address.
func SourceOf(addr net.Addr) Source {
	if ap, err := netip.ParseAddrPort(addr.String()); err == nil {
		return Source{IP: ap.Addr().Unmap(), Port: ap.Port()}
	}
	return Source{}
}
