package gateway

import (
	"context"
	"net"
	"net/netip"
	"slices"
)

// Workstation is one entry of the source inventory: the machines allowed to
// talk to targets, and who answers for them. Modbus carries no user, so this
// is where its principal comes from.
type Workstation struct {
	Prefix netip.Prefix // an address or a CIDR block
	Name   string
	Owner  string
	User   string
	Roles  []string
}

// Inventory is an Identifier that looks the source address up in a list of
// workstations; the most specific prefix wins. An address in no prefix stays
// unknown: principal.auth "none".
type Inventory struct {
	entries []Workstation
}

var _ Identifier = (*Inventory)(nil)

// NewInventory returns an inventory over ws (copied).
func NewInventory(ws []Workstation) *Inventory {
	e := slices.Clone(ws)
	for i := range e {
		e[i].Prefix = e[i].Prefix.Masked()
	}
	slices.SortStableFunc(e, func(a, b Workstation) int { return b.Prefix.Bits() - a.Prefix.Bits() })
	return &Inventory{entries: e}
}

// Lookup returns the workstation whose prefix holds ip most specifically.
func (inv *Inventory) Lookup(ip netip.Addr) (Workstation, bool) {
	ip = ip.Unmap()
	for _, w := range inv.entries {
		if w.Prefix.Contains(ip) {
			return w, true
		}
	}
	return Workstation{}, false
}

// Identify fills the session's source name and principal from the inventory.
func (inv *Inventory) Identify(_ context.Context, _ net.Conn, s *Session) {
	w, ok := inv.Lookup(s.Source.IP)
	if !ok {
		s.Principal = Principal{Auth: AuthNone}
		return
	}
	s.Source.Name, s.Source.Owner = w.Name, w.Owner
	s.Principal = Principal{User: w.User, Auth: AuthInventory, Roles: w.Roles}
}
