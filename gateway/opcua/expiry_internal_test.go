package opcua

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gopcua/opcua/ua"

	"github.com/interlock-ics/interlock/certs"
	"github.com/interlock-ics/interlock/gateway/opcua/opcuatest"
)

// A session logged in with an X.509 user token ends just after the user's
// certificate expires, its session.close saying why.
func TestSessionEndsWhenItsUserCertificateExpires(t *testing.T) {
	h := newHarness(t, Options{Anonymous: true})
	st, err := certs.Open(h.e.opts.PKI)
	if err != nil {
		t.Fatal(err)
	}
	end := time.Now().Add(4 * time.Second).Truncate(time.Second)
	ucert, ukey := opcuatest.AppCertificate(t, "carol", "urn:user:carol", end)
	x509Login(t, h, ucert, ukey, func() {
		if _, err := st.Trust(certs.Thumbprint(ucert)); err != nil { // from rejected/, where the refusal put it
			t.Fatal(err)
		}
	})
	deadline := end.Add(10 * time.Second)
	for len(h.audit.Events("session.close")) == 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	closes := h.audit.Events("session.close")
	if len(closes) != 1 || closes[0].Err == nil || !strings.Contains(closes[0].Err.Error(), "the X.509 user certificate no longer passes") ||
		!strings.Contains(closes[0].Err.Error(), "Bad_CertificateTimeInvalid") {
		t.Fatalf("session.close records %+v, want one saying carol's certificate expired", closes)
	}
	if !time.Now().After(end) {
		t.Errorf("ended before the certificate's end %v", end)
	}
}

// Once the server certificate of a secured upstream leg has expired, the
// connections to the server are closed and the next connect validates it
// again: reads fail while it does not pass, and come back when it does.
func TestUpstreamDroppedWhenServerCertificateExpires(t *testing.T) {
	h, c, cs := activatedOnTestServer(t)
	var expired atomic.Bool
	var checks atomic.Int32
	h.e.up.validate = func([]byte) (time.Time, error) {
		checks.Add(1)
		if expired.Load() {
			return time.Time{}, errors.New("Bad_CertificateTimeInvalid: expired")
		}
		return time.Now().Add(time.Hour), nil
	}
	h.e.up.forgetEndpoints() // the next connect asks and validates
	rd := func() ua.StatusCode {
		r := c.handle(context.Background(), &ua.ReadRequest{RequestHeader: hdr(cs.AuthenticationToken), NodesToRead: []*ua.ReadValueID{
			{NodeID: ua.MustParseNodeID(opcuatest.NodePressure), AttributeID: ua.AttributeIDValue, DataEncoding: &ua.QualifiedName{}}}})
		return r.Header().ServiceResult
	}
	s := h.e.sessions.get(cs.AuthenticationToken)
	s.mu.Lock()
	up := s.up
	s.mu.Unlock()
	up.dropConnection() // connected before validate was set
	if got := rd(); got != ua.StatusOK {
		t.Fatalf("read: %v", got)
	}
	if checks.Load() != 1 {
		t.Fatalf("%d server certificate checks at the connect, want 1", checks.Load())
	}
	h.e.checkExpiredCerts(time.Now())
	if got, n := rd(), checks.Load(); got != ua.StatusOK || n != 1 {
		t.Fatalf("before the certificate's end: read %v after %d checks, want Good and no check again", got, n)
	}
	expired.Store(true)
	h.e.checkExpiredCerts(time.Now().Add(2 * time.Hour))
	if got := rd(); got == ua.StatusOK {
		t.Fatal("read Good through a server whose certificate expired")
	}
	expired.Store(false)
	deadline := time.Now().Add(15 * time.Second)
	got := rd()
	for got != ua.StatusOK && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
		got = rd()
	}
	if got != ua.StatusOK {
		t.Errorf("read once the certificate passes again: %v", got)
	}
}
