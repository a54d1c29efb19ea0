package export

import (
	"net/netip"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/interlock-ics/interlock/audit/query"
)

// OCSF events: API Activity (class 6003, category 6 Application Activity)
// for calls, sessions, rejected requests and every other record, and
// Application Lifecycle (6002) for gateway.start and gateway.stop. The
// mapping is documented field by field in docs/ocsf-mapping.md; keep the two
// in step.

// OCSFVersion is the OCSF schema version the events follow.
const OCSFVersion = "1.3.0"

// Product names in metadata.product and app.
const (
	ProductName = "Interlock"
	VendorName  = "Interlock"
)

// OCSF classes and categories used.
const (
	ocsfCategoryApplication = 6
	ocsfClassAPIActivity    = 6003
	ocsfClassAppLifecycle   = 6002
)

// OCSF activity ids.
const (
	activityUnknown = 0
	activityRead    = 2
	activityUpdate  = 3
	activityStart   = 3 // Application Lifecycle
	activityStop    = 4 // Application Lifecycle
	activityOther   = 99
)

// OCSF status ids.
const (
	statusUnknown = 0
	statusSuccess = 1
	statusFailure = 2
)

// AppendOCSF appends the OCSF event of rec (a call with its result joined,
// or any other record) as one JSON object, without a newline. version is the
// gateway's version for metadata.product.version.
func AppendOCSF(dst []byte, r *query.Record, version string) []byte {
	j := jsonw{b: append(dst, '{')}
	switch r.Event {
	case query.EventGatewayStart, query.EventGatewayStop:
		ocsfLifecycle(&j, r, version)
	default:
		ocsfAPIActivity(&j, r, version)
	}
	j.b = append(j.b, '}')
	return j.b
}

func ocsfLifecycle(j *jsonw, r *query.Record, version string) {
	activity, name := activityStart, "Start"
	if r.Event == query.EventGatewayStop {
		activity, name = activityStop, "Stop"
	}
	ocsfClassification(j, ocsfClassAppLifecycle, "Application Lifecycle", activity, name)
	ocsfTime(j, r)
	sev := SeverityOf(r)
	j.int("severity_id", int64(sev))
	j.str("severity", sev.Name())
	j.int("status_id", statusSuccess)
	j.str("status", "Success")
	j.str("message", Summary(r))
	ocsfMetadata(j, r, version)
	j.open("app")
	j.str("name", ProductName)
	j.str("vendor_name", VendorName)
	j.strOpt("version", version)
	j.close()
	j.open("unmapped")
	j.raw("record", r.Line)
	j.close()
}

func ocsfAPIActivity(j *jsonw, r *query.Record, version string) {
	activity, name := ocsfActivity(r)
	ocsfClassification(j, ocsfClassAPIActivity, "API Activity", activity, name)
	ocsfTime(j, r)
	sev := SeverityOf(r)
	j.int("severity_id", int64(sev))
	j.str("severity", sev.Name())
	if id, ok := ocsfStatus(r); ok {
		j.int("status_id", int64(id))
		j.str("status", [...]string{"Unknown", "Success", "Failure"}[id])
		if res := r.Result; res != nil && res.HasCode && res.Code != 0 {
			j.str("status_code", strconv.Itoa(res.Code))
		} else if r.Event == query.EventResult && r.HasCode && r.Code != 0 {
			j.str("status_code", strconv.Itoa(r.Code))
		}
		j.strOpt("status_detail", statusDetail(r))
	}
	if r.Result != nil {
		if t := r.Result.When(); !t.IsZero() {
			j.int("end_time", t.UnixMilli())
		}
		if r.Result.HasLatency {
			j.int("duration", r.Result.LatencyUS/1000)
		}
	} else if r.Event == query.EventSessionClose && r.HasDurationMS {
		j.int("duration", r.DurationMS)
	} else if r.Event == query.EventRequestRejectedSuppressed {
		ocsfAggregate(j, r)
	}
	var msg [256]byte
	j.strBytes("message", appendSummary(msg[:0], r))
	ocsfMetadata(j, r, version)
	ocsfActor(j, r)
	ocsfAPI(j, r)
	ocsfEndpoints(j, r)
	ocsfResources(j, r)
	ocsfUnmapped(j, r)
}

// ocsfAggregate writes a request.rejected_suppressed record as the
// aggregate event OCSF has attributes for: count the rejections it counts,
// start_time and end_time the first and last of them (not the window,
// which also holds the rejections recorded one by one).
func ocsfAggregate(j *jsonw, r *query.Record) {
	if t := r.FirstWhen(); !t.IsZero() {
		j.int("start_time", t.UnixMilli())
	}
	if t := r.LastWhen(); !t.IsZero() {
		j.int("end_time", t.UnixMilli())
	}
	if r.Count > 0 {
		j.int("count", r.Count)
	}
}

func ocsfClassification(j *jsonw, class int, className string, activity int, activityName string) {
	j.int("class_uid", int64(class))
	j.str("class_name", className)
	j.int("category_uid", ocsfCategoryApplication)
	j.str("category_name", "Application Activity")
	j.int("activity_id", int64(activity))
	j.str("activity_name", activityName)
	j.int("type_uid", int64(class*100+activity))
	j.str("type_name", className+": "+activityName)
}

// ocsfTime writes time, the record's time in ms since the epoch (0 for a
// record without a readable time: the field is required).
func ocsfTime(j *jsonw, r *query.Record) {
	var ms int64
	if t := r.When(); !t.IsZero() {
		ms = t.UnixMilli()
	}
	j.int("time", ms)
	j.int("timezone_offset", 0) // record times are UTC
}

// ocsfActivity maps the access of a call to CRUD; what is not a read or a
// write (execute, program, diagnostics, sessions, gateway events) is Other,
// named by its access or event.
func ocsfActivity(r *query.Record) (int, string) {
	switch r.Event {
	case query.EventCall, query.EventRequestRejected:
		switch r.Operation.Access {
		case "read", "browse", "subscribe":
			return activityRead, "Read"
		case "write":
			return activityUpdate, "Update"
		case "":
			if r.Event == query.EventRequestRejected {
				return activityOther, r.Event
			}
			return activityUnknown, "Unknown"
		}
		return activityOther, capitalize(r.Operation.Access)
	case query.EventResult:
		return activityUnknown, "Unknown" // the access is in the call record
	}
	return activityOther, r.Event
}

func capitalize(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

// ocsfStatus is Success or Failure where the record says: a call by its
// result, a session open by its success, a rejected request (or a count of
// them, request.rejected_suppressed) always Failure, other records Failure
// when they carry an error.
func ocsfStatus(r *query.Record) (int, bool) {
	switch r.Event {
	case query.EventCall:
		switch r.Outcome() {
		case "":
			return statusUnknown, true
		case "ok":
			return statusSuccess, true
		}
		return statusFailure, true
	case query.EventResult:
		if r.Status == "ok" {
			return statusSuccess, true
		}
		return statusFailure, true
	case query.EventRequestRejected, query.EventRequestRejectedSuppressed, query.EventAuthFailed, query.EventTicketRefused:
		return statusFailure, true
	case query.EventSessionOpen:
		if r.HasSuccess && !r.Success {
			return statusFailure, true
		}
		return statusSuccess, true
	}
	if r.Error != "" {
		return statusFailure, true
	}
	if r.Event == query.EventSessionClose {
		return statusSuccess, true
	}
	return 0, false
}

func ocsfMetadata(j *jsonw, r *query.Record, version string) {
	j.open("metadata")
	j.str("version", OCSFVersion)
	j.open("product")
	j.str("name", ProductName)
	j.str("vendor_name", VendorName)
	j.strOpt("version", version)
	j.close()
	j.strOpt("uid", r.Hash)
	j.strOpt("original_time", r.Time)
	if r.File != "" && r.File != "-" {
		j.str("log_name", filepath.Base(r.File))
	}
	j.str("log_provider", "interlock")
	j.int("sequence", int64(r.Seq))
	j.strOpt("event_code", r.Event)
	j.strOpt("correlation_uid", r.SessionID)
	j.close()
}

// ocsfActor writes the principal, the session and the policy decision. A
// record without either (a gateway event; request.rejected_suppressed, a
// source address over many connections) names the gateway as the actor:
// the class requires one. Its source is src_endpoint, not a user.
func ocsfActor(j *jsonw, r *query.Record) {
	j.open("actor")
	user := r.UserOrBy()
	if user != "" {
		j.open("user")
		j.str("name", user)
		j.open("account")
		j.str("name", user)
		j.close()
		if len(r.Principal.Roles) > 0 {
			j.openArray("groups")
			for _, role := range r.Principal.Roles {
				j.elem()
				j.str("name", role)
				j.close()
			}
			j.closeArray()
		}
		j.strOpt("credential_uid", r.Principal.CertThumbprint)
		j.close()
	}
	if r.SessionID != "" {
		j.open("session")
		j.str("uid", r.SessionID)
		j.close()
	}
	if r.Decision.Present {
		j.openArray("authorizations")
		j.elem()
		j.str("decision", r.Decision.Verdict())
		j.open("policy")
		j.str("name", "data.interlock.decision")
		j.strOpt("uid", r.Decision.PolicyRevision)
		j.strOpt("version", r.Decision.PolicyRevision)
		j.close()
		j.close()
		j.closeArray()
	}
	if user == "" && r.SessionID == "" {
		j.str("app_name", ProductName)
		j.strOpt("app_uid", r.Gateway)
	}
	j.close()
}

func ocsfAPI(j *jsonw, r *query.Record) {
	j.open("api")
	op := r.FunctionName()
	if op == "" {
		op = r.Event
	}
	j.str("operation", op)
	if r.Protocol != "" {
		j.open("service")
		j.str("name", r.Protocol)
		j.close()
	}
	if r.CallID != "" {
		j.open("request")
		j.str("uid", r.CallID)
		j.raw("data", r.Operation.Raw)
		j.close()
	}
	res := r.Result
	if r.Event == query.EventResult {
		res = r
	}
	if res != nil {
		j.open("response")
		if res.HasCode {
			j.int("code", int64(res.Code))
		}
		if res.Status != "ok" {
			j.strOpt("error", res.Status)
			j.strOpt("error_message", res.Detail)
		}
		j.strOpt("message", res.Status)
		j.close()
	}
	j.close()
}

// ocsfEndpoints writes the client as src_endpoint (the gateway itself for
// records without one: the class requires it) and the target as
// dst_endpoint.
func ocsfEndpoints(j *jsonw, r *query.Record) {
	s := &r.Source
	j.open("src_endpoint")
	if s.IP == "" && s.Name == "" {
		j.str("name", r.Gateway)
	} else {
		j.strOpt("ip", s.IP)
		if s.HasPort {
			j.int("port", int64(s.Port))
		}
		if isHostname(s.Name) {
			j.str("hostname", s.Name)
		} else {
			j.strOpt("name", s.Name)
		}
		if s.Owner != "" {
			j.open("owner")
			j.str("name", s.Owner)
			j.close()
		}
	}
	j.close()

	name := r.TargetName()
	if name == "" {
		return
	}
	j.open("dst_endpoint")
	j.str("name", name)
	j.strOpt("svc_name", r.Protocol)
	if ip, port, ok := upstreamAddr(r.Target.Upstream); ok {
		j.str("ip", ip)
		if port > 0 {
			j.int("port", int64(port))
		}
	}
	j.close()
}

// upstreamAddr is the IP and port of an upstream URL such as
// tcp://10.0.0.20:502 or tcp://[fd00::20]:502; false for a serial line or a
// host name. Read by hand: url.Parse costs more than the rest of an event.
func upstreamAddr(upstream string) (string, int, bool) {
	_, rest, ok := strings.Cut(upstream, "://")
	if !ok {
		return "", 0, false
	}
	if i := strings.IndexAny(rest, "/?#"); i >= 0 {
		rest = rest[:i]
	}
	if ap, err := netip.ParseAddrPort(rest); err == nil {
		return ap.Addr().String(), int(ap.Port()), true
	}
	if a, err := netip.ParseAddr(strings.TrimSuffix(strings.TrimPrefix(rest, "["), "]")); err == nil {
		return a.String(), 0, true
	}
	return "", 0, false
}

// isHostname reports whether a source name is a valid host name (OCSF
// hostname_t); another name goes to the endpoint's name.
func isHostname(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for _, label := range strings.Split(s, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

// ocsfResources writes the target and the registers or node the call
// touched.
func ocsfResources(j *jsonw, r *query.Record) {
	name := r.TargetName()
	op := &r.Operation
	if name == "" && !op.HasAddress && op.NodeID == "" {
		return
	}
	j.openArray("resources")
	if name != "" {
		j.elem()
		j.str("name", name)
		j.str("type", "target")
		j.strOpt("uid", r.Target.Upstream)
		if r.Target.HasUnitID || r.Listener != "" {
			j.open("data")
			if r.Target.HasUnitID {
				j.int("unit_id", int64(r.Target.UnitID))
			}
			j.strOpt("listener", r.Listener)
			j.close()
		}
		j.close()
	}
	if op.HasAddress {
		j.elem()
		j.str("name", op.Registers())
		j.str("type", registerType(r.Protocol, op.Function))
		j.open("data")
		j.int("address", int64(op.Address))
		if op.HasQuantity {
			j.int("quantity", int64(op.Quantity))
		}
		if op.HasReadAddress {
			j.int("read_address", int64(op.ReadAddress))
			j.int("read_quantity", int64(op.ReadQuantity))
		}
		j.close()
		j.close()
	}
	if op.NodeID != "" {
		j.elem()
		j.str("uid", op.NodeID)
		name := op.BrowsePath
		if name == "" {
			name = op.NodeID
		}
		j.str("name", name)
		j.str("type", "opcua.node")
		j.close()
	}
	j.closeArray()
}

// registerType names the Modbus data table a function works on.
func registerType(protocol, function string) string {
	prefix := protocol
	if prefix == "" {
		prefix = "modbus"
	}
	switch function {
	case "read_coils", "write_single_coil", "write_multiple_coils":
		return prefix + ".coils"
	case "read_discrete_inputs":
		return prefix + ".discrete_inputs"
	case "read_input_registers":
		return prefix + ".input_registers"
	case "read_holding_registers", "write_single_register", "write_multiple_registers",
		"mask_write_register", "read_write_multiple_registers", "read_fifo_queue":
		return prefix + ".holding_registers"
	}
	return prefix + ".address"
}

// ocsfUnmapped keeps what OCSF has no place for under the names of the
// audit record; a record of another event keeps itself whole.
func ocsfUnmapped(j *jsonw, r *query.Record) {
	j.open("unmapped")
	j.strOpt("gateway", r.Gateway)
	j.strOpt("event", r.Event)
	j.strOpt("listener", r.Listener)
	j.strOpt("call_time", r.CallTime)
	p := &r.Principal
	if p.Auth != "" || p.ApplicationURI != "" {
		j.open("principal")
		j.strOpt("auth", p.Auth)
		j.strOpt("application_uri", p.ApplicationURI)
		j.close()
	}
	if r.Operation.Access != "" {
		j.open("operation")
		j.str("access", r.Operation.Access)
		j.close()
	}
	if d := &r.Decision; d.Present {
		j.open("decision")
		j.bool("allow", d.Allow)
		j.bool("alert", d.Alert)
		j.strs("reasons", d.Reasons)
		j.strOpt("policy_revision", d.PolicyRevision)
		j.strOpt("decision_id", d.DecisionID)
		j.strOpt("mode", d.Mode)
		if d.Cached {
			j.bool("cached", true)
		}
		j.strOpt("ticket", d.Ticket)
		j.close()
	}
	if res := r.Result; res != nil {
		j.open("result")
		j.int("seq", int64(res.Seq))
		j.strOpt("time", res.Time)
		j.strOpt("hash", res.Hash)
		j.strOpt("status", res.Status)
		if res.HasCode {
			j.int("code", int64(res.Code))
		}
		j.strOpt("detail", res.Detail)
		if res.HasLatency {
			j.int("latency_us", res.LatencyUS)
		}
		j.close()
	}
	switch r.Event {
	case query.EventCall, query.EventSessionOpen, query.EventSessionClose:
	case query.EventResult:
		if r.HasLatency {
			j.int("latency_us", r.LatencyUS)
		}
		j.strOpt("detail", r.Detail)
	case query.EventRequestRejected:
		j.strOpt("reason", r.Reason)
		j.strOpt("detail", r.Detail)
		j.strOpt("response", r.Response)
	default:
		j.raw("record", r.Line)
	}
	if r.Event == query.EventSessionOpen {
		j.strOpt("reason", r.Reason)
	}
	j.strOpt("error", r.Error)
	j.close()
}
