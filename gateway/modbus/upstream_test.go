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
		"127.0.0.1:502":                          "want tcp://host:port, rtuovertcp://host:port, tls://host:port or rtu:///dev/ttyXXX",
		"localhost:502":                          `unsupported scheme "localhost" (want tcp, rtuovertcp, tls or rtu)`,
		"tcp://127.0.0.1":                        "want tcp://host:port",
		"rtuovertcp://:502":                      "want rtuovertcp://host:port",
		"rtu://":                                 "want rtu:///dev/ttyXXX?baud=19200",
		"tls://127.0.0.1:802":                    "a tls:// upstream needs modbus.upstream_tls",
		"tls://:802":                             "want tls://host:port (port 802 when none is given)",
		"udp://127.0.0.1:502":                    `unsupported scheme "udp"`,
		"tcp://[::1:502":                         "is not a URL",
		"rtu:///dev/ttyS0?buad=9600&parity=N":    `"buad" is not a serial line setting (want baud, parity, data_bits, stop_bits)`,
		"rtu:///dev/ttyS0?baud=0":                "baud=0 is not a positive number",
		"tcp://127.0.0.1:502?unit=2":             "want tcp://host:port and nothing after it (no path, query or user)",
		"rtuovertcp://127.0.0.1:4001/2":          "want rtuovertcp://host:port and nothing after it",
		"tcp://plc@127.0.0.1:502":                "want tcp://host:port and nothing after it",
		"rtu:///dev/ttyS0?baud=9600&data_bits=9": "data_bits=9 is not one of 5, 6, 7, 8",
		"rtu:///dev/ttyS0?stop_bits=0":           "stop_bits=0 is not 1 or 2",
	} {
		_, err := modbus.NewUpstream(raw, modbus.UpstreamOptions{})
		if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), `"`+raw+`"`) {
			t.Errorf("NewUpstream(%q): %v; want an error quoting it and saying %q", raw, err, want)
		}
	}
	for _, raw := range []string{"tcp://127.0.0.1:502", "tcp://127.0.0.1:502/", "rtu:///dev/ttyS0?baud=9600&parity=N&data_bits=7&stop_bits=2", "rtu:///dev/ttyS0"} {
		if _, err := modbus.NewUpstream(raw, modbus.UpstreamOptions{}); err != nil {
			t.Errorf("%s: %v", raw, err)
		}
	}
}
