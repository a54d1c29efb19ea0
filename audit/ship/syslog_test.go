package ship

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/interlock-ics/interlock/audit/ship/shiptest"
)

func TestOctetCountingFraming(t *testing.T) {
	for _, tc := range []struct {
		in    string
		want  []string
		fails bool
	}{
		{in: "5 hello3 abc", want: []string{"hello", "abc"}},
		{in: "13 <13>1 - - - -11 <13>1 x y z", want: []string{"<13>1 - - - -", "<13>1 x y z"}},
		{in: "05 hello", fails: true}, // leading zero
		{in: "0 ", fails: true},       // MSG-LEN is non-zero
		{in: "x5 hello", fails: true}, // not a number
		{in: "5hello", fails: true},   // no space
		{in: "10 short", fails: true}, // cut short
		{in: "99999999999 a", fails: true},
	} {
		r := bufio.NewReader(strings.NewReader(tc.in))
		var got []string
		var err error
		for {
			var f []byte
			if f, err = shiptest.ReadFrame(r); err != nil {
				break
			}
			got = append(got, string(f))
		}
		if tc.fails != (err != nil && err.Error() != "EOF") || fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("%q: frames %q, err %v", tc.in, got, err)
		}
	}

	// What the sink writes reads back frame by frame.
	l := newTestLog(t)
	l.add(3, "call", "")
	s, _ := NewSyslog(SyslogOptions{Address: "127.0.0.1:1"})
	var out bytes.Buffer
	for seq := uint64(1); seq <= 3; seq++ {
		var r Record
		parseRecord(&r, []byte(l.lines[seq]))
		msg := s.AppendMessage(nil, &r)
		fmt.Fprintf(&out, "%d %s", len(msg), msg)
	}
	br := bufio.NewReader(&out)
	for seq := uint64(1); seq <= 3; seq++ {
		f, err := shiptest.ReadFrame(br)
		if err != nil {
			t.Fatal(err)
		}
		m, err := shiptest.Parse(f)
		if err != nil || string(m.Msg) != l.lines[seq] {
			t.Fatalf("frame %d: %v\n%s", seq, err, f)
		}
	}
}

func TestRFC5424Header(t *testing.T) {
	l := newTestLog(t)
	denied := l.line("call", `,"operation":{"function":"write_single_register","access":"write"},"decision":{"allow":false,"alert":true,"reasons":["outside_maintenance_window"]}`)
	var r Record
	parseRecord(&r, []byte(denied))
	s, _ := NewSyslog(SyslogOptions{Address: "127.0.0.1:1"})
	msg := s.AppendMessage(nil, &r)
	m, err := shiptest.Parse(msg)
	if err != nil {
		t.Fatalf("%v\n%s", err, msg)
	}
	ts := r.Time.Truncate(time.Microsecond).Format("2006-01-02T15:04:05.000000Z")
	want := shiptest.Message{Facility: 13, Severity: 4, Timestamp: ts, Hostname: "gw1", AppName: "interlock", ProcID: "-", MsgID: "call", SDID: "interlock@32473"}
	if m.Facility != want.Facility || m.Severity != want.Severity || m.Timestamp != want.Timestamp || m.Hostname != want.Hostname ||
		m.AppName != want.AppName || m.ProcID != want.ProcID || m.MsgID != want.MsgID || m.SDID != want.SDID {
		t.Fatalf("header\n got %+v\nwant %+v\n%s", m, want, msg)
	}
	if m.Params["seq"] != "1" || m.Params["gateway"] != "gw1" || m.Params["event"] != "call" {
		t.Fatalf("structured data %v", m.Params)
	}
	if string(m.Msg) != denied {
		t.Fatalf("MSG is not the record line:\n%s", m.Msg)
	}
	if !strings.HasPrefix(string(msg), "<108>1 ") {
		t.Fatalf("PRI: %s", msg)
	}

	// Header fields are printable ASCII within their lengths; param values
	// escape '"', '\' and ']'.
	s2, _ := NewSyslog(SyslogOptions{Address: "127.0.0.1:1", Hostname: "plant a", Facility: 4, SDID: "ilk@99999"})
	r2 := Record{Line: []byte(`{}`), Seq: 9, Event: "a very long event name that goes on and on", Gateway: `g"w]1\`, Severity: SeverityInfo}
	m2, err := shiptest.Parse(s2.AppendMessage(nil, &r2))
	if err != nil {
		t.Fatal(err)
	}
	if m2.Hostname != "plant_a" || len(m2.MsgID) != 32 || m2.Params["gateway"] != `g"w]1\` || m2.Facility != 4 || m2.Severity != 6 || m2.SDID != "ilk@99999" {
		t.Fatalf("sanitized header: %+v", m2)
	}
	// A line that is not a record has no structured data and no time.
	r3 := Record{Line: []byte("garbage"), Severity: SeverityError}
	m3, err := shiptest.Parse(s.AppendMessage(nil, &r3))
	if err != nil || m3.SDID != "" || m3.Timestamp != "-" || m3.MsgID != "-" || string(m3.Msg) != "garbage" {
		t.Fatalf("non-record: %+v %v", m3, err)
	}
}

func TestSeverities(t *testing.T) {
	for _, tc := range []struct {
		event, extra string
		want         Severity
	}{
		{"call", `,"operation":{"access":"read"},"decision":{"allow":true,"alert":false}`, SeverityInfo},
		{"call", `,"operation":{"access":"read"},"decision":{"allow":true,"alert":true}`, SeverityWarning},
		{"call", `,"operation":{"access":"write"},"decision":{"allow":true,"alert":false}`, SeverityNotice},
		{"call", `,"operation":{"access":"write"},"decision":{"allow":false,"alert":false}`, SeverityWarning},
		{"result", `,"status":"ok"`, SeverityInfo},
		{"result", `,"status":"denied"`, SeverityWarning},
		{"request.rejected", `,"reason":"bad_length"`, SeverityWarning},
		{"session.open", `,"success":true`, SeverityInfo},
		{"session.open", `,"success":false`, SeverityWarning},
		{"session.auth_failed", ``, SeverityWarning},
		{"policy.load_failed", ``, SeverityError},
		{"policy.load", ``, SeverityNotice},
		{"users.load_failed", ``, SeverityError},
		{"users.load", ``, SeverityNotice},
		{"tls.load_failed", ``, SeverityError},
		{"tls.load", ``, SeverityNotice},
		{"upstream_tls.load_failed", `,"listener":"plc1","error":"listener plc1: modbus.upstream_tls.ca: /etc/interlock/plc-ca.crt holds no PEM certificate"`, SeverityError},
		{"upstream_tls.load", `,"listener":"plc1","ca_certs":1,"connections_closed":1`, SeverityNotice},
		{"pki.load_failed", `,"listener":"line1","error":"pki: trusted/certs: permission denied"`, SeverityError},
		{"pki.load", `,"listener":"line1","pki":{"trusted_certs":2,"issuer_certs":1,"crls":1,"revoked_certificates":3},"sessions_ended":1`, SeverityNotice},
		{"gateway.start", ``, SeverityNotice},
		{"ticket.open", ``, SeverityNotice},
		{"audit.checkpoint", ``, SeverityNotice},
		{"audit.rotated", ``, SeverityNotice},
		{"audit.recovered", ``, SeverityError},
		{"audit.ship_skipped", ``, SeverityError},
		{"session.close", ``, SeverityInfo},
	} {
		l := newTestLog(t)
		var r Record
		parseRecord(&r, []byte(l.line(tc.event, tc.extra)))
		if r.Severity != tc.want {
			t.Errorf("%s %s: severity %d, want %d", tc.event, tc.extra, r.Severity, tc.want)
		}
	}
}

// checkStream checks what a receiver got against the log: every record, in
// order, the same bytes, each connection carrying a run of consecutive
// records that starts no later than the one after the last delivered. It
// returns how many arrived more than once.
func checkStream(t *testing.T, msgs []shiptest.Message, lines map[uint64]string, last uint64) int {
	t.Helper()
	seen := map[uint64]bool{}
	var next uint64 = 1
	conn, prev := 0, uint64(0)
	dups := 0
	for _, m := range msgs {
		var v struct {
			Seq uint64 `json:"seq"`
		}
		if err := json.Unmarshal(m.Msg, &v); err != nil {
			t.Fatalf("MSG is not JSON: %v: %s", err, m.Msg)
		}
		if string(m.Msg) != lines[v.Seq] {
			t.Fatalf("record %d arrived changed:\n got %s\nwant %s", v.Seq, m.Msg, lines[v.Seq])
		}
		if m.Conn != conn {
			if v.Seq > next {
				t.Fatalf("connection %d starts at %d, but %d never arrived", m.Conn, v.Seq, next)
			}
			conn, prev = m.Conn, v.Seq
		} else if v.Seq != prev+1 {
			t.Fatalf("connection %d: %d after %d", m.Conn, v.Seq, prev)
		}
		prev = v.Seq
		if seen[v.Seq] {
			dups++
		} else {
			seen[v.Seq] = true
			next = v.Seq + 1
		}
	}
	if next != last+1 {
		t.Fatalf("arrived up to %d, want %d", next-1, last)
	}
	return dups
}

func waitMessages(t *testing.T, r *shiptest.Receiver, last uint64) []shiptest.Message {
	t.Helper()
	var msgs []shiptest.Message
	waitFor(t, fmt.Sprintf("records up to %d at the receiver", last), func() (bool, string) {
		msgs = r.Messages()
		if errs := r.Errors(); len(errs) > 0 {
			t.Fatalf("receiver: %v", errs)
		}
		seen := map[string]bool{}
		for _, m := range msgs {
			seen[m.Params["seq"]] = true
		}
		for s := uint64(1); s <= last; s++ {
			if !seen[fmt.Sprint(s)] {
				return false, fmt.Sprintf("%d messages, %d missing", len(msgs), s)
			}
		}
		return true, ""
	})
	return msgs
}

func TestSyslogOutageAndReconnect(t *testing.T) {
	rcv, err := shiptest.NewReceiver(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer rcv.Stop()
	l := newTestLog(t)
	l.add(50, "call", "")
	sink, _ := NewSyslog(SyslogOptions{Address: rcv.Addr()})
	s := startShipper(t, l, sink, func(o *Options) { o.BatchRecords = 20 })
	waitMessages(t, rcv, 50)

	// The receiver goes away at once after taking records: what was not
	// confirmed yet is sent again.
	l.add(10, "call", "")
	time.Sleep(10 * time.Millisecond)
	rcv.Stop()
	l.add(140, "call", "")
	waitFor(t, "the outage noticed", func() (bool, string) { st := s.Stats(); return st.Down, st.LastError })
	if err := rcv.Start(); err != nil {
		t.Fatal(err)
	}
	msgs := waitMessages(t, rcv, 200)
	dups := checkStream(t, msgs, l.lines, 200)
	waitFor(t, "cursor at 200", func() (bool, string) { st := s.Stats(); return st.Seq == 200, fmt.Sprint(st.Seq) })
	t.Logf("%d messages for 200 records: %d sent again after the reconnect (Resent %d)", len(msgs), dups, s.Stats().Resent)
}

func TestSyslogStopConfirmsByClosing(t *testing.T) {
	rcv, err := shiptest.NewReceiver(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer rcv.Stop()
	l := newTestLog(t)
	l.add(30, "call", "")
	sink, _ := NewSyslog(SyslogOptions{Address: rcv.Addr()})
	s := startShipper(t, l, sink, func(o *Options) { o.ConfirmAfter = time.Hour })
	waitMessages(t, rcv, 30)
	stopShipper(s)
	cur, _, _ := ReadCursor(CursorPath(l.path, "test"))
	if cur.Seq != 30 {
		t.Fatalf("cursor at %d after a clean close, want 30", cur.Seq)
	}
	if _, closed := rcv.Connections(); closed != 1 {
		t.Fatalf("the shipper did not close its connection cleanly")
	}
}

func TestSyslogTLS(t *testing.T) {
	pki, err := shiptest.NewPKI(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	rcv, err := shiptest.NewReceiver(pki.ServerTLS(true))
	if err != nil {
		t.Fatal(err)
	}
	defer rcv.Stop()
	l := newTestLog(t)
	l.add(25, "call", "")

	cfg, err := TLSConfig(pki.CA, pki.ClientCert, pki.ClientKey, "")
	if err != nil {
		t.Fatal(err)
	}
	sink, _ := NewSyslog(SyslogOptions{Address: rcv.Addr(), TLS: cfg, Format: FormatCEF, Version: "test"})
	startShipper(t, l, sink, nil)
	waitFor(t, "25 CEF messages over TLS", func() (bool, string) {
		n := len(rcv.Messages())
		return n >= 25, fmt.Sprint(n)
	})
	m := rcv.Messages()[0]
	if !strings.HasPrefix(string(m.Msg), "CEF:0|Interlock|interlock|test|call|") || !strings.Contains(string(m.Msg), "cn1=1") {
		t.Fatalf("CEF message: %s", m.Msg)
	}

	// The receiver's name is verified, and so is the client's certificate.
	for name, cfg := range map[string]func() (*SyslogOptions, error){
		"wrong server name": func() (*SyslogOptions, error) {
			c, err := TLSConfig(pki.CA, pki.ClientCert, pki.ClientKey, "siem.example")
			return &SyslogOptions{Address: rcv.Addr(), TLS: c}, err
		},
		"unknown CA": func() (*SyslogOptions, error) {
			c, err := TLSConfig("", pki.ClientCert, pki.ClientKey, "")
			return &SyslogOptions{Address: rcv.Addr(), TLS: c}, err
		},
		"no client certificate": func() (*SyslogOptions, error) {
			c, err := TLSConfig(pki.CA, "", "", "")
			return &SyslogOptions{Address: rcv.Addr(), TLS: c}, err
		},
	} {
		o, err := cfg()
		if err != nil {
			t.Fatal(err)
		}
		sink, _ := NewSyslog(*o)
		l2 := newTestLog(t)
		l2.add(1, "call", "")
		s := startShipper(t, l2, sink, nil)
		waitFor(t, name, func() (bool, string) {
			st := s.Stats()
			return st.Errors > 0 && st.Seq == 0, st.LastError
		})
		t.Logf("%s: %s", name, s.Stats().LastError)
	}
}

// A receiver that ends an idle connection (an idle timeout) must not cost
// the records of the next batch: the shipper connects again and sends them.
func TestSyslogReceiverClosesIdleConnection(t *testing.T) {
	rcv, err := shiptest.NewReceiver(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer rcv.Stop()
	l := newTestLog(t)
	l.add(50, "call", "")
	sink, _ := NewSyslog(SyslogOptions{Address: rcv.Addr()})
	s := startShipper(t, l, sink, nil)
	waitMessages(t, rcv, 50)
	waitFor(t, "cursor at 50", func() (bool, string) { st := s.Stats(); return st.Seq == 50, fmt.Sprint(st.Seq) })

	for round := range 3 {
		rcv.CloseConnections()
		time.Sleep(20 * time.Millisecond) // the FIN reaches the shipper's socket
		l.add(20, "call", "")
		last := uint64(50 + 20*(round+1))
		msgs := waitMessages(t, rcv, last)
		checkStream(t, msgs, l.lines, last)
		waitFor(t, "cursor at the end", func() (bool, string) { st := s.Stats(); return st.Seq == last, fmt.Sprint(st.Seq) })
	}
}

// partitionProxy forwards TCP connections to a receiver and can act as a
// network that stops carrying packets: Partition stops reading from the
// sender (what the proxy's kernel took by then still gets through, as on a
// real network what was acknowledged arrived); Cut then ends the sender's
// connection with a reset, as the sender's TCP eventually does after a
// partition. New connections are forwarded again.
type partitionProxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	conns  []*proxyConn
}

type proxyConn struct {
	in, out net.Conn
	frozen  atomic.Bool
	done    chan struct{}
}

func newPartitionProxy(t *testing.T, target string) *partitionProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &partitionProxy{ln: ln, target: target}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			out, err := net.Dial("tcp", target)
			if err != nil {
				in.Close()
				continue
			}
			pc := &proxyConn{in: in, out: out, done: make(chan struct{})}
			p.mu.Lock()
			p.conns = append(p.conns, pc)
			p.mu.Unlock()
			go pc.forward()
		}
	}()
	return p
}

func (pc *proxyConn) forward() {
	defer close(pc.done)
	buf := make([]byte, 32<<10)
	for !pc.frozen.Load() {
		pc.in.SetReadDeadline(time.Now().Add(10 * time.Millisecond))
		n, err := pc.in.Read(buf)
		pc.out.Write(buf[:n])
		var ne net.Error
		if err != nil && !(errors.As(err, &ne) && ne.Timeout()) {
			if errors.Is(err, io.EOF) {
				pc.out.(*net.TCPConn).CloseWrite()
				io.Copy(io.Discard, pc.out)
				pc.in.Close()
			}
			pc.out.Close()
			return
		}
	}
}

func (p *partitionProxy) Partition() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, pc := range p.conns {
		pc.frozen.Store(true)
		<-pc.done
	}
}

// Cut forwards what the proxy's kernel acknowledged, then resets the
// sender's connections.
func (p *partitionProxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	buf := make([]byte, 64<<10)
	for _, pc := range p.conns {
		<-pc.done
		// Until nothing more comes: three quiet reads in a row, so that a
		// reader held off the CPU past its deadline (a busy CI machine)
		// does not take that for the end and drop acknowledged bytes.
		for quiet := 0; quiet < 3; {
			pc.in.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
			n, err := pc.in.Read(buf)
			pc.out.Write(buf[:n])
			var ne net.Error
			switch {
			case n > 0:
				quiet = 0
			case err != nil && errors.As(err, &ne) && ne.Timeout():
				quiet++
			case err != nil:
				quiet = 3
			}
		}
		// The last frame may be cut short: the receiver sees a framing
		// error on this connection.
		pc.out.Close()
		pc.in.(*net.TCPConn).SetLinger(0)
		pc.in.Close()
	}
	p.conns = nil
}

// Records the receiver's TCP never acknowledged (a network partition: the
// connection stays open, writes go into the send buffer) do not count as
// delivered however long the connection stays open; when it finally breaks
// they go again.
func TestSyslogPartitionDoesNotConfirmUnacknowledged(t *testing.T) {
	rcv, err := shiptest.NewReceiver(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer rcv.Stop()
	proxy := newPartitionProxy(t, rcv.Addr())
	l := newTestLog(t)
	l.add(20, "call", "")
	sink, _ := NewSyslog(SyslogOptions{Address: proxy.ln.Addr().String(), WriteTimeout: 3 * time.Second})
	s := startShipper(t, l, sink, func(o *Options) { o.BatchRecords = 100 })
	waitMessages(t, rcv, 20)
	waitFor(t, "cursor at 20", func() (bool, string) { st := s.Stats(); return st.Seq == 20, fmt.Sprint(st.Seq) })

	proxy.Partition()
	// Far more than the proxy's receive window: most of it stays in the
	// shipper's send buffer, unacknowledged.
	l.add(3000, "call", benchCall)
	time.Sleep(500 * time.Millisecond) // ten times ConfirmAfter
	before := s.Stats().Seq
	cut, _ := rcv.Connections() // the connection that ends in a reset
	proxy.Cut()
	var msgs []shiptest.Message
	waitFor(t, "3020 records at the receiver", func() (bool, string) {
		for _, err := range rcv.Errors() {
			if !strings.HasPrefix(err.Error(), fmt.Sprintf("connection %d: framing:", cut)) {
				t.Fatalf("receiver: %v", err)
			}
		}
		msgs = rcv.Messages()
		seen := map[string]bool{}
		for _, m := range msgs {
			seen[m.Params["seq"]] = true
		}
		for i := 1; i <= 3020; i++ {
			if !seen[fmt.Sprint(i)] {
				n, c := rcv.Connections()
				return false, fmt.Sprintf("%d messages, %d missing; %d connections, %d closed; %v; %+v", len(msgs), i, n, c, rcv.Errors(), s.Stats())
			}
		}
		return true, ""
	})
	dups := checkStream(t, msgs, l.lines, 3020)
	t.Logf("cursor at %d when the connection was cut; %d messages for 3020 records, %d again", before, len(msgs), dups)
}
