package gatewaytest

import (
	"bytes"
	"net"
	"sync"
	"testing"
	"time"
)

// DialFrom connects to addr from the loopback address local, closed when
// the test ends. On Linux all of 127/8 is loopback, so 127.0.0.2 is
// another source host than 127.0.0.1.
func DialFrom(t testing.TB, local, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("cannot connect from %s (the tests of per-source limits need loopback addresses beyond 127.0.0.1, as Linux has): %v", local, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// LogBuffer is an operational log a test reads while other goroutines
// write it.
type LogBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *LogBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *LogBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
