package opcuatest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/interlock-ics/interlock/gateway/gatewaytest"
)

// Scenario is what peers/client.js does: connect, open a session, run the
// steps in order, close.
type Scenario struct {
	Endpoint string `json:"endpoint"`
	// SecurityPolicy by node-opcua's name (None, Basic256Sha256,
	// Aes128_Sha256_RsaOaep, Aes256_Sha256_RsaPss); default None.
	SecurityPolicy string `json:"securityPolicy,omitempty"`
	// SecurityMode: None, Sign or SignAndEncrypt; default None.
	SecurityMode string `json:"securityMode,omitempty"`
	// User and Password log in with a UserName token; anonymous when User
	// is empty.
	User     string `json:"user,omitempty"`
	Password string `json:"password,omitempty"`
	// CertDir is the client's PKI root; its application certificate is
	// created there on first use (ClientCertificate reads it). Default: a
	// temporary directory of the test.
	CertDir         string `json:"certDir,omitempty"`
	ApplicationName string `json:"applicationName,omitempty"`
	ApplicationURI  string `json:"applicationUri,omitempty"`
	// TokenLifetime is the secure channel token lifetime the client asks
	// for (renewed at about 75% of it); default node-opcua's.
	TokenLifetime time.Duration `json:"-"`
	// RequestTimeout bounds each request; default 10 s.
	RequestTimeout time.Duration `json:"-"`
	// Reconnect lets the client open a new secure channel when its
	// connection drops, and take its session there (up to 20 tries, 100 to
	// 500 ms apart); default: a dropped connection ends the scenario's
	// session.
	Reconnect bool   `json:"reconnect,omitempty"`
	Steps     []Step `json:"steps"`

	certificateOnly bool
}

// Step is one action; set exactly one field.
type Step struct {
	Read      []string      `json:"read,omitempty"`
	ReadRaw   []string      `json:"readRaw,omitempty"` // Read as sent: structures node-opcua cannot decode stay {typeId, body}
	Write     []WriteValue  `json:"write,omitempty"`
	Call      *Call         `json:"call,omitempty"`
	Browse    string        `json:"browse,omitempty"`
	Subscribe *Subscribe    `json:"subscribe,omitempty"`
	ReadLoop  *ReadLoop     `json:"readLoop,omitempty"`
	Trigger   *Trigger      `json:"trigger,omitempty"`
	Transfer  *Transfer     `json:"transfer,omitempty"`
	Sleep     time.Duration `json:"-"`
}

// Trigger creates a subscription with a Reporting item on Triggering and a
// Sampling item on each node of Linked, waits for the triggering item's
// first notification, calls SetTriggering with the linked items as the
// links to add, then makes Write (a change of the triggering node). The
// result has the SetTriggering status (Status) and AddResults (one per
// linked item, in order), the write's status (Results), and the
// notifications: TriggerValues until the triggering item reports the
// written value, LinkedValues until five publishing intervals later.
type Trigger struct {
	Triggering string        `json:"triggering"`
	Linked     []string      `json:"linked"`
	Write      WriteValue    `json:"write"`
	Interval   time.Duration `json:"-"` // publishing and sampling interval; default 100 ms
	Timeout    time.Duration `json:"-"` // bounds each wait; default 10 s
}

// Transfer creates a subscription with one item on Node in the scenario's
// session (A) and waits for its first notification (Samples of the
// result); a second connection then opens session B with the identity To
// and calls TransferSubscriptions for it (Status, TransferResults). When
// the transfer succeeds, B publishes until it has Samples data changes
// (Moved), A's status changes are collected (StatusChanges:
// Good_SubscriptionTransferred) and B deletes the subscription; when it is
// refused, A must go on receiving Samples notifications (After).
type Transfer struct {
	Node              string        `json:"node"`
	Samples           int           `json:"samples"`
	To                Identity      `json:"to"`
	SendInitialValues bool          `json:"sendInitialValues,omitempty"`
	Interval          time.Duration `json:"-"` // default 100 ms
	Timeout           time.Duration `json:"-"` // bounds each wait; default 10 s
}

// Identity is a user name login, or anonymous when User is empty.
type Identity struct {
	User     string `json:"user,omitempty"`
	Password string `json:"password,omitempty"`
}

// WriteValue writes Value to the Value attribute of Node as DataType
// (Double, Int32, Boolean, String ...).
type WriteValue struct {
	Node     string `json:"node"`
	Value    any    `json:"value"`
	DataType string `json:"dataType"`
}

// Call calls Method on Object with Args.
type Call struct {
	Object string    `json:"object"`
	Method string    `json:"method"`
	Args   []Variant `json:"args,omitempty"`
}

// Subscribe creates a subscription with one data-change monitored item on
// Node and waits for Samples notifications (or Timeout, default 10 s, which
// also bounds the wait for the subscription to start). A refused
// CreateSubscription is the step's Error (and Status); a refused monitored
// item is the step's Status.
type Subscribe struct {
	Node     string        `json:"node"`
	Samples  int           `json:"samples"`
	Interval time.Duration `json:"-"` // publishing and sampling interval; default 100 ms
	Timeout  time.Duration `json:"-"`
}

// ReadLoop reads Node back to back for Seconds and counts the outcomes.
type ReadLoop struct {
	Node    string  `json:"node"`
	Seconds float64 `json:"seconds"`
}

// MarshalJSON adds the millisecond fields client.js reads.
func (s Trigger) MarshalJSON() ([]byte, error) {
	type plain Trigger
	return withMillis(plain(s), s.Interval, s.Timeout)
}

// MarshalJSON adds the millisecond fields client.js reads.
func (s Transfer) MarshalJSON() ([]byte, error) {
	type plain Transfer
	return withMillis(plain(s), s.Interval, s.Timeout)
}

// withMillis encodes the JSON object v with the fields "interval" and
// "timeoutMs" in milliseconds, left out when zero.
func withMillis(v any, interval, timeout time.Duration) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var m map[string]any
	if err := d.Decode(&m); err != nil {
		return nil, err
	}
	if interval > 0 {
		m["interval"] = interval.Milliseconds()
	}
	if timeout > 0 {
		m["timeoutMs"] = timeout.Milliseconds()
	}
	return json.Marshal(m)
}

// Variant is a typed value.
type Variant struct {
	DataType string `json:"dataType"`
	Value    any    `json:"value"`
}

// MarshalJSON adds the millisecond fields client.js reads.
func (s Scenario) MarshalJSON() ([]byte, error) {
	type plain Scenario
	out := struct {
		plain
		TokenLifetimeMs int64 `json:"tokenLifetimeMs,omitempty"`
		TimeoutMs       int64 `json:"timeoutMs,omitempty"`
		CertificateOnly bool  `json:"certificateOnly,omitempty"`
	}{plain(s), s.TokenLifetime.Milliseconds(), s.RequestTimeout.Milliseconds(), s.certificateOnly}
	return json.Marshal(out)
}

// MarshalJSON writes a step as client.js reads it.
func (s Step) MarshalJSON() ([]byte, error) {
	if s.Sleep > 0 {
		return json.Marshal(map[string]int64{"sleep": s.Sleep.Milliseconds()})
	}
	type plain Step
	return json.Marshal(plain(s))
}

// MarshalJSON adds the millisecond fields client.js reads.
func (s Subscribe) MarshalJSON() ([]byte, error) {
	type plain Subscribe
	return json.Marshal(struct {
		plain
		IntervalMs int64 `json:"interval,omitempty"`
		TimeoutMs  int64 `json:"timeoutMs,omitempty"`
	}{plain(s), s.Interval.Milliseconds(), s.Timeout.Milliseconds()})
}

// Result is what the client printed.
type Result struct {
	// Connect is the secure channel: OK false with Error (and Status when
	// the error names one) when it could not be opened.
	Connect StepResult
	// Session is CreateSession + ActivateSession: OK false with Error and
	// Status (BadUserAccessDenied, BadIdentityTokenRejected ...) on refusal.
	Session StepResult
	// Steps has one result per scenario step, in order; a step that threw
	// has Error (and Status when the error names one).
	Steps []StepResult
	// Close is the final line: OK and TokenRenewals (secure channel token
	// renewals seen during the run).
	Close StepResult
	// ExitCode: 0 ran, 2 connection failed, 3 session refused, 1 other error.
	ExitCode int
	// Log is what client.js printed besides its JSON lines, and its stderr.
	Log string
}

// StepResult is one line of client.js output; the fields present depend on
// Step.
type StepResult struct {
	Step  string `json:"step"`
	OK    bool   `json:"ok"`
	Error string `json:"error"`
	Node  string `json:"node"`
	User  string `json:"user"`
	// Status of a call, browse or subscribe, the service result of
	// SetTriggering (trigger) or TransferSubscriptions (transfer), or the
	// status an error names.
	Status *Status `json:"status"`
	// Results of a read (values) or a write (statuses only), per node.
	Results []Value `json:"results"`
	// Call results.
	InputArgumentResults []Status  `json:"inputArgumentResults"`
	Outputs              []Variant `json:"outputs"`
	// Browse results.
	References []Reference `json:"references"`
	// Subscribe: the data-change notifications received; Transfer: those
	// of session A before the transfer.
	Samples []Value `json:"samples"`
	// Trigger: the SetTriggering results of the links added, and the
	// notifications of the triggering and of the linked item.
	AddResults    []Status `json:"addResults"`
	TriggerValues []Value  `json:"triggering"`
	LinkedValues  []Value  `json:"linked"`
	// Transfer: the result per subscription, the data changes session B
	// received, those session A received after a refused transfer, and
	// A's status change notifications.
	TransferResults []Status `json:"transferResults"`
	Moved           []Value  `json:"moved"`
	After           []Value  `json:"after"`
	StatusChanges   []Status `json:"statusChanges"`
	// ReadLoop counts: good reads, failed reads (a Bad status or an
	// exception), good reads since the last failure (recovery), and the
	// first and last failure.
	Reads               int    `json:"reads"`
	Errors              int    `json:"errors"`
	ReadsAfterLastError int    `json:"readsAfterLastError"`
	FirstError          string `json:"firstError"`
	LastError           string `json:"lastError"`
	// Close.
	TokenRenewals int `json:"tokenRenewals"`
}

// Value is one node's result of a read, write or notification.
type Value struct {
	Node     string `json:"node"`
	Status   Status `json:"status"`
	DataType string `json:"dataType"`
	Value    any    `json:"value"` // as decoded from JSON: numbers are float64
}

// Reference is one browse result.
type Reference struct {
	BrowseName string `json:"browseName"`
	NodeID     string `json:"nodeId"`
	NodeClass  string `json:"nodeClass"`
}

// Client is a running client.js.
type Client struct {
	cmd    *exec.Cmd
	cancel context.CancelFunc
	done   chan struct{}
	res    *Result
	err    error
}

// RunClient runs a scenario to its end and returns what the client printed.
// A connection or session failure is a Result (ExitCode 2 or 3), not a test
// failure; a client that cannot run, or prints nothing to decode, fails the
// test.
func RunClient(t testing.TB, sc Scenario) *Result {
	t.Helper()
	res, err := StartClient(t, sc).Wait()
	if err != nil {
		t.Fatalf("opcuatest: node-opcua client: %v", err)
	}
	return res
}

// StartClient starts a scenario and returns at once: for clients that run
// alongside others. Wait for its result (safe from any goroutine); it is
// killed when the test ends.
func StartClient(t testing.TB, sc Scenario) *Client {
	t.Helper()
	gatewaytest.RequirePeer(t, gatewaytest.PeerNodeOPCUA)
	if sc.CertDir == "" {
		sc.CertDir = t.TempDir()
	}
	scenario, err := json.Marshal(sc)
	if err != nil {
		t.Fatalf("opcuatest: scenario: %v", err)
	}
	limit := budget(sc)
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	cmd := exec.CommandContext(ctx, "node", filepath.Join(Peers(), "client.js"), string(scenario))
	cmd.Env = nodeEnv(t)
	cmd.WaitDelay = 5 * time.Second
	setProcAttr(cmd)
	log := &lockedBuffer{}
	cmd.Stderr = log
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatalf("opcuatest: start node-opcua client: %v", err)
	}
	c := &Client{cmd: cmd, cancel: cancel, done: make(chan struct{})}
	t.Cleanup(func() {
		cancel()
		<-c.done
	})
	go func() {
		defer close(c.done)
		defer cancel()
		res := &Result{}
		scan := bufio.NewScanner(stdout)
		scan.Buffer(make([]byte, 64<<10), 64<<20)
		lines := 0
		for scan.Scan() {
			line := scan.Bytes()
			var r StepResult
			if len(line) == 0 || line[0] != '{' || json.Unmarshal(line, &r) != nil {
				log.Write(append(append([]byte(nil), line...), '\n'))
				continue
			}
			lines++
			switch r.Step {
			case "connect":
				res.Connect = r
			case "session":
				res.Session = r
			case "close", "certificate":
				res.Close = r
			case "scenario", "error":
				res.Connect.Error = r.Error
			default:
				res.Steps = append(res.Steps, r)
			}
		}
		werr := cmd.Wait()
		res.Log = log.String()
		var exit *exec.ExitError
		switch {
		case ctx.Err() == context.DeadlineExceeded:
			c.err = fmt.Errorf("did not finish in %s:\n%s", limit, res.Log)
		case errors.As(werr, &exit):
			res.ExitCode = exit.ExitCode()
			if res.ExitCode != 2 && res.ExitCode != 3 {
				c.err = fmt.Errorf("exit %d: %s\n%s", res.ExitCode, res.Connect.Error, res.Log)
			}
		case werr != nil:
			c.err = werr
		case lines == 0:
			c.err = fmt.Errorf("printed no result:\n%s", res.Log)
		}
		c.res = res
	}()
	return c
}

// Wait waits for the client to end and returns its result.
func (c *Client) Wait() (*Result, error) {
	<-c.done
	return c.res, c.err
}

// Stop kills the client.
func (c *Client) Stop() {
	c.cancel()
	<-c.done
}

// budget is how long a scenario may run: a generous fixed part for start
// and certificate creation, and the time its steps ask for.
func budget(sc Scenario) time.Duration {
	d := 2 * time.Minute
	for _, s := range sc.Steps {
		if s.ReadLoop != nil {
			d += time.Duration(s.ReadLoop.Seconds * float64(time.Second))
		}
		if s.Subscribe != nil {
			d += s.Subscribe.Timeout
		}
		if s.Trigger != nil {
			d += 3 * max(s.Trigger.Timeout, 10*time.Second)
		}
		if s.Transfer != nil {
			d += 3 * max(s.Transfer.Timeout, 10*time.Second)
		}
		d += s.Sleep
	}
	return d
}

// CreateClientCertificate makes the node-opcua client's application
// instance certificate in sc.CertDir (required) without connecting, with
// sc.ApplicationName and sc.ApplicationURI when set, and returns it (DER):
// a server or the gateway can trust it before the client's first
// connection. Later scenarios with the same CertDir use it.
func CreateClientCertificate(t testing.TB, sc Scenario) []byte {
	t.Helper()
	if sc.CertDir == "" {
		t.Fatal("opcuatest: CreateClientCertificate needs a CertDir")
	}
	sc.certificateOnly = true
	sc.Steps = nil
	r := RunClient(t, sc)
	if !r.Close.OK {
		t.Fatalf("opcuatest: client certificate: %s\n%s", r.Close.Error, r.Log)
	}
	der, err := ClientCertificate(sc.CertDir)
	if err != nil {
		t.Fatalf("opcuatest: client certificate: %v", err)
	}
	return der
}
