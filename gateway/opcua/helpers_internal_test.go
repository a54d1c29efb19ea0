package opcua

import (
	"net/netip"
	"time"
)

const timeSecond = time.Second

func mustAddr(s string) netip.Addr { return netip.MustParseAddr(s) }

func timeZero() time.Time { return time.Date(2026, 11, 26, 8, 0, 0, 0, time.UTC) }
