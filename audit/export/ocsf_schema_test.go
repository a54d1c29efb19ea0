package export

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"testing"
)

// The shape of the OCSF 1.3.0 schema that the export relies on, written down
// from the schema's own files (events/base_event.json with
// includes/classification.json and occurrence.json,
// events/application/api_activity.json and application_lifecycle.json, and
// the objects/*.json used below): which attributes exist, their types, which
// are required, and the "at least one of" constraints. Only what the export
// can write is listed; an attribute outside the list fails the test, so a
// typo or an invented name cannot slip into an event. No network: the test
// carries its schema.

type ocsfAttr struct {
	typ      string // integer, long, timestamp, string, boolean, json, ip, port, hostname, object:<name>, array:<type>
	required bool
}

func req(typ string) ocsfAttr { return ocsfAttr{typ, true} }
func opt(typ string) ocsfAttr { return ocsfAttr{typ, false} }

var baseEvent = map[string]ocsfAttr{
	"activity_id": req("integer"), "activity_name": opt("string"),
	"category_uid": req("integer"), "category_name": opt("string"),
	"class_uid": req("integer"), "class_name": opt("string"),
	"type_uid": req("long"), "type_name": opt("string"),
	"time": req("timestamp"), "timezone_offset": opt("integer"),
	"start_time": opt("timestamp"), "end_time": opt("timestamp"), "duration": opt("long"), "count": opt("integer"),
	"severity_id": req("integer"), "severity": opt("string"),
	"status_id": opt("integer"), "status": opt("string"), "status_code": opt("string"), "status_detail": opt("string"),
	"message": opt("string"), "metadata": req("object:metadata"),
	"unmapped": opt("json"), "raw_data": opt("string"),
}

var ocsfClasses = map[int]map[string]ocsfAttr{
	6003: with(baseEvent, map[string]ocsfAttr{ // API Activity
		"actor": req("object:actor"), "api": req("object:api"), "src_endpoint": req("object:network_endpoint"),
		"dst_endpoint": opt("object:network_endpoint"), "resources": opt("array:object:resource_details"),
	}),
	6002: with(baseEvent, map[string]ocsfAttr{ // Application Lifecycle
		"app": req("object:product"),
	}),
}

var ocsfObjects = map[string]map[string]ocsfAttr{
	"metadata": {
		"version": req("string"), "product": req("object:product"), "uid": opt("string"),
		"original_time": opt("string"), "log_name": opt("string"), "log_provider": opt("string"),
		"sequence": opt("integer"), "event_code": opt("string"), "correlation_uid": opt("string"),
		"logged_time": opt("timestamp"), "labels": opt("array:string"), "profiles": opt("array:string"),
	},
	"product":       {"name": req("string"), "vendor_name": opt("string"), "version": opt("string"), "uid": opt("string")},
	"actor":         {"user": opt("object:user"), "session": opt("object:session"), "authorizations": opt("array:object:authorization"), "app_name": opt("string"), "app_uid": opt("string")},
	"user":          {"name": opt("string"), "uid": opt("string"), "account": opt("object:account"), "groups": opt("array:object:group"), "credential_uid": opt("string")},
	"account":       {"name": opt("string"), "uid": opt("string"), "type": opt("string")},
	"group":         {"name": opt("string"), "uid": opt("string")},
	"session":       {"uid": opt("string")},
	"authorization": {"decision": opt("string"), "policy": opt("object:policy")},
	"policy":        {"name": opt("string"), "uid": opt("string"), "version": opt("string")},
	"api":           {"operation": req("string"), "service": opt("object:service"), "request": opt("object:request"), "response": opt("object:response"), "version": opt("string")},
	"service":       {"name": opt("string"), "uid": opt("string"), "version": opt("string")},
	"request":       {"uid": req("string"), "data": opt("json")},
	"response":      {"code": opt("integer"), "error": opt("string"), "error_message": opt("string"), "message": opt("string")},
	"network_endpoint": {
		"ip": opt("ip"), "port": opt("port"), "hostname": opt("hostname"), "name": opt("string"),
		"svc_name": opt("string"), "uid": opt("string"), "owner": opt("object:user"),
	},
	"resource_details": {"name": opt("string"), "uid": opt("string"), "type": opt("string"), "data": opt("json"), "labels": opt("array:string")},
}

// atLeastOne are the objects' constraints.
var atLeastOne = map[string][]string{
	"actor":            {"process", "user", "invoked_by", "session", "app_name", "app_uid"},
	"user":             {"account", "name", "uid"},
	"network_endpoint": {"ip", "uid", "name", "hostname", "svc_name", "instance_uid", "interface_uid", "interface_name"},
}

// The enums of the ids the export writes, with their captions where the
// schema fixes them.
var (
	apiActivityNames = map[int]string{0: "Unknown", 1: "Create", 2: "Read", 3: "Update", 4: "Delete"} // 99 Other: named by the source
	lifecycleNames   = map[int]string{3: "Start", 4: "Stop"}
	severityNames    = map[int]string{0: "Unknown", 1: "Informational", 2: "Low", 3: "Medium", 4: "High", 5: "Critical", 6: "Fatal"}
	statusNames      = map[int]string{0: "Unknown", 1: "Success", 2: "Failure"}
	classNames       = map[int]string{6003: "API Activity", 6002: "Application Lifecycle"}
)

func with(a, b map[string]ocsfAttr) map[string]ocsfAttr {
	out := map[string]ocsfAttr{}
	for k, v := range a {
		out[k] = v
	}
	for k, v := range b {
		out[k] = v
	}
	return out
}

// validateOCSF checks one event against the schema above.
func validateOCSF(event []byte) []string {
	var ev map[string]any
	dec := json.NewDecoder(bytes.NewReader(event))
	dec.UseNumber()
	if err := dec.Decode(&ev); err != nil {
		return []string{"not a JSON object: " + err.Error()}
	}
	var errs []string
	fail := func(format string, a ...any) { errs = append(errs, fmt.Sprintf(format, a...)) }
	class, _ := intOf(ev["class_uid"])
	attrs, ok := ocsfClasses[int(class)]
	if !ok {
		return []string{fmt.Sprintf("class_uid %v is not a class the export writes", ev["class_uid"])}
	}
	checkObject(ev, attrs, "", fail)

	activity, _ := intOf(ev["activity_id"])
	category, _ := intOf(ev["category_uid"])
	typeUID, _ := intOf(ev["type_uid"])
	if category != 6 || ev["category_name"] != "Application Activity" {
		fail("category %v %v, want 6 Application Activity", ev["category_uid"], ev["category_name"])
	}
	if ev["class_name"] != classNames[int(class)] {
		fail("class_name %v for class %d", ev["class_name"], class)
	}
	if typeUID != class*100+activity {
		fail("type_uid %d, want class_uid*100+activity_id = %d", typeUID, class*100+activity)
	}
	if name, _ := ev["activity_name"].(string); ev["type_name"] != classNames[int(class)]+": "+name {
		fail("type_name %v does not follow activity_name %v", ev["type_name"], name)
	}
	names := apiActivityNames
	if class == 6002 {
		names = lifecycleNames
	}
	if want, ok := names[int(activity)]; ok {
		if ev["activity_name"] != want {
			fail("activity_name %v, want %s for activity_id %d", ev["activity_name"], want, activity)
		}
	} else if activity != 99 {
		fail("activity_id %d is not in the enum of class %d", activity, class)
	} else if s, _ := ev["activity_name"].(string); s == "" {
		fail("activity_id 99 (Other) without an activity_name")
	}
	sev, _ := intOf(ev["severity_id"])
	if want, ok := severityNames[int(sev)]; !ok || ev["severity"] != want {
		fail("severity_id %d with severity %v", sev, ev["severity"])
	}
	if v, present := ev["status_id"]; present {
		st, _ := intOf(v)
		if want, ok := statusNames[int(st)]; !ok || ev["status"] != want {
			fail("status_id %d with status %v", st, ev["status"])
		}
	}
	return errs
}

func checkObject(o map[string]any, attrs map[string]ocsfAttr, path string, fail func(string, ...any)) {
	keys := make([]string, 0, len(o))
	for k := range o {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		a, ok := attrs[k]
		if !ok {
			fail("%s%s is not an attribute of this object", path, k)
			continue
		}
		checkValue(o[k], a.typ, path+k, fail)
	}
	for k, a := range attrs {
		if _, ok := o[k]; a.required && !ok {
			fail("%s%s is required", path, k)
		}
	}
}

func checkValue(v any, typ, path string, fail func(string, ...any)) {
	switch {
	case typ == "json":
	case typ == "string":
		if s, ok := v.(string); !ok || s == "" {
			fail("%s = %v: want a non-empty string", path, v)
		}
	case typ == "boolean":
		if _, ok := v.(bool); !ok {
			fail("%s = %v: want a boolean", path, v)
		}
	case typ == "integer" || typ == "long" || typ == "timestamp":
		n, ok := intOf(v)
		if !ok || (typ == "integer" && (n > 1<<31-1 || n < -1<<31)) || (typ == "timestamp" && n <= 0) {
			fail("%s = %v: want a %s", path, v, typ)
		}
	case typ == "port":
		if n, ok := intOf(v); !ok || n < 0 || n > 65535 {
			fail("%s = %v: want a port", path, v)
		}
	case typ == "ip":
		s, _ := v.(string)
		if _, err := netip.ParseAddr(s); err != nil {
			fail("%s = %v: want an IP address", path, v)
		}
	case typ == "hostname":
		s, _ := v.(string)
		if !isHostname(s) {
			fail("%s = %v: want a host name", path, v)
		}
	case len(typ) > 7 && typ[:7] == "object:":
		o, ok := v.(map[string]any)
		if !ok {
			fail("%s = %v: want an object", path, v)
			return
		}
		name := typ[7:]
		checkObject(o, ocsfObjects[name], path+".", fail)
		if one := atLeastOne[name]; one != nil && !slices.ContainsFunc(one, func(k string) bool { _, ok := o[k]; return ok }) {
			fail("%s has none of %v", path, one)
		}
	case len(typ) > 6 && typ[:6] == "array:":
		arr, ok := v.([]any)
		if !ok || len(arr) == 0 {
			fail("%s = %v: want a non-empty array", path, v)
			return
		}
		for i, e := range arr {
			checkValue(e, typ[6:], fmt.Sprintf("%s[%d]", path, i), fail)
		}
	default:
		fail("%s: unknown type %s in the test's schema", path, typ)
	}
}

func intOf(v any) (int64, bool) {
	n, ok := v.(json.Number)
	if !ok {
		return 0, false
	}
	i, err := n.Int64()
	return i, err == nil
}

// Every kind of record gives an event with the required fields of its class
// and of the base event, each of the right type.
func TestOCSFRequiredFieldsAndTypes(t *testing.T) {
	kinds := eventKinds(t)
	names := make([]string, 0, len(kinds))
	for n := range kinds {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			ev := AppendOCSF(nil, kinds[name], "1.4.0")
			for _, e := range validateOCSF(ev) {
				t.Error(e)
			}
			if t.Failed() {
				t.Logf("event: %s", ev)
			}
		})
	}
}

// The validator itself catches what it is there for.
func TestOCSFValidatorCatchesMistakes(t *testing.T) {
	good := AppendOCSF(nil, joined(t, lineCallRead, lineResultOK), "1.4.0")
	for _, tc := range []struct{ from, to, want string }{
		{`"class_uid":6003,`, ``, "class_uid"},
		{`"time":1795667097692,`, `"time":"2026-11-26",`, "time"},
		{`"type_uid":600302`, `"type_uid":600303`, "type_uid"},
		{`"operation":"read_holding_registers",`, ``, "api.operation is required"},
		{`"port":55424`, `"port":"55424"`, "src_endpoint.port"},
		{`"hostname":"ews-alice"`, `"hostnam":"ews-alice"`, "not an attribute"},
		{`"severity":"Informational"`, `"severity":"Low"`, "severity_id"},
	} {
		bad := bytes.Replace(good, []byte(tc.from), []byte(tc.to), 1)
		if bytes.Equal(bad, good) {
			t.Fatalf("%q is not in the event", tc.from)
		}
		errs := validateOCSF(bad)
		if !slices.ContainsFunc(errs, func(e string) bool { return bytes.Contains([]byte(e), []byte(tc.want)) }) {
			t.Errorf("%q → %q: errors %q, want one about %s", tc.from, tc.to, errs, tc.want)
		}
	}
}
