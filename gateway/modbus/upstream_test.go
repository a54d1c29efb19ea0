package modbus_test

import (
	"strings"
	"testing"

	"github.com/interlock-ics/interlock/gateway/modbus"
)

// TestNewUpstreamRefusals: an upstream URL the gateway cannot use is
// refused with an error that quotes it and says what is wanted.
func TestNewUpstreamRefusals(t *testing.T) {
	for raw, want := range map[string]string{
		"127.0.0.1:502":       "want tcp://host:port, rtuovertcp://host:port, tls://host:port or rtu:///dev/ttyXXX",
		"localhost:502":       `unsupported scheme "localhost" (want tcp, rtuovertcp, tls or rtu)`,
		"tcp://127.0.0.1":     "want tcp://host:port",
		"rtuovertcp://:502":   "want rtuovertcp://host:port",
		"rtu://":              "want rtu:///dev/ttyXXX?baud=19200",
		"tls://127.0.0.1:802": "a tls:// upstream needs modbus.upstream_tls",
		"tls://:802":          "want tls://host:port (port 802 when none is given)",
		"udp://127.0.0.1:502": `unsupported scheme "udp"`,
		"tcp://[::1:502":      "is not a URL",
	} {
		_, err := modbus.NewUpstream(raw, modbus.UpstreamOptions{})
		if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), `"`+raw+`"`) {
			t.Errorf("NewUpstream(%q): %v; want an error quoting it and saying %q", raw, err, want)
		}
	}
	if _, err := modbus.NewUpstream("tcp://127.0.0.1:502", modbus.UpstreamOptions{}); err != nil {
		t.Errorf("tcp://127.0.0.1:502: %v", err)
	}
}
