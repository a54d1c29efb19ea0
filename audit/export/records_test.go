package export

import (
	"testing"

	"github.com/interlock-ics/interlock/audit/query"
)

// Hand-written records of every kind, in the shape the gateway writes them
// (hash chain values shortened: export does not check them).
const (
	lineCallDenied   = `{"seq":20,"time":"2026-11-26T04:24:57.826370077Z","event":"call","gateway":"site-a-gw1","call_id":"6279bd63","session_id":"52a52c40","listener":"plc1","call_time":"2026-11-26T04:24:57.824854366Z","source":{"ip":"10.0.5.7","port":55480,"name":"ews-alice","owner":"alice"},"principal":{"user":"alice","auth":"inventory","roles":["engineer","approver"]},"target":{"name":"plc1","upstream":"tcp://10.0.0.20:502","unit_id":1},"protocol":"modbus","operation":{"function":"write_single_register","access":"write","code":6,"address":100,"values":[1600]},"decision":{"allow":false,"alert":true,"reasons":["outside_maintenance_window"],"policy_revision":"625cc695ee7ff6e5","decision_id":"2a33af42","mode":"enforce"},"prev":"h19","hash":"h20"}`
	lineResultDenied = `{"seq":21,"time":"2026-11-26T04:24:57.827627289Z","event":"result","gateway":"site-a-gw1","call_id":"6279bd63","session_id":"52a52c40","function":"write_single_register","status":"denied","detail":"outside_maintenance_window","latency_us":0,"prev":"h20","hash":"h21"}`

	lineCallRead       = `{"seq":4,"time":"2026-11-26T04:24:57.692761324Z","event":"call","gateway":"site-a-gw1","call_id":"f7cd2293","session_id":"9a393e4f","listener":"plc1","call_time":"2026-11-26T04:24:57.692435578Z","source":{"ip":"10.0.5.7","port":55424,"name":"ews-alice","owner":"alice"},"principal":{"user":"alice","auth":"inventory","roles":["engineer"]},"target":{"name":"plc1","upstream":"tcp://10.0.0.20:502","unit_id":1},"protocol":"modbus","operation":{"function":"read_holding_registers","access":"read","code":3,"address":100,"quantity":2},"decision":{"allow":true,"alert":false,"reasons":["read"],"policy_revision":"625cc695ee7ff6e5","decision_id":"a0ee4f21","mode":"enforce","cached":true},"prev":"h3","hash":"h4"}`
	lineResultOK       = `{"seq":5,"time":"2026-11-26T04:24:57.693866288Z","event":"result","gateway":"site-a-gw1","call_id":"f7cd2293","session_id":"9a393e4f","function":"read_holding_registers","status":"ok","latency_us":1051,"prev":"h4","hash":"h5"}`
	lineCallWrite      = `{"seq":47,"time":"2026-11-26T04:24:59.385828958Z","event":"call","gateway":"site-a-gw1","call_id":"c47","session_id":"s46","listener":"plc1","call_time":"2026-11-26T04:24:59.385Z","source":{"ip":"10.0.5.7","port":55600,"name":"ews-alice","owner":"alice"},"principal":{"user":"alice","auth":"inventory","roles":["engineer"]},"target":{"name":"drives","upstream":"rtu:///dev/ttyS0?baud=19200","unit_id":3},"protocol":"modbus","operation":{"function":"write_multiple_registers","access":"write","code":16,"address":1000,"quantity":2,"values":[1,2]},"decision":{"allow":true,"alert":true,"reasons":["ticket:T-1","protected_range:safety_limits"],"policy_revision":"r9","decision_id":"d47","mode":"enforce","ticket":"T-1"},"prev":"h46","hash":"h47"}`
	lineResultExc      = `{"seq":48,"time":"2026-11-26T04:24:59.388422982Z","event":"result","gateway":"site-a-gw1","call_id":"c47","session_id":"s46","function":"write_multiple_registers","status":"exception","code":2,"detail":"illegal data address","latency_us":2591,"prev":"h47","hash":"h48"}`
	lineCallProg       = `{"seq":60,"time":"2026-11-26T05:00:00.000000000Z","event":"call","gateway":"site-a-gw1","call_id":"c60","session_id":"s59","listener":"plc1","call_time":"2026-11-26T05:00:00Z","source":{"ip":"fd00::5","port":40000},"principal":{"auth":"none"},"target":{"name":"plc1","upstream":"tcp://[fd00::20]:502","unit_id":1},"protocol":"modbus","operation":{"function":"unknown","access":"program","code":90,"data":"0102"},"decision":{"allow":false,"alert":true,"reasons":["unknown_function_denied"],"policy_revision":"r9","decision_id":"d60","mode":"monitor"},"prev":"h59","hash":"h60"}`
	lineResultMon      = `{"seq":61,"time":"2026-11-26T05:00:00.001000000Z","event":"result","gateway":"site-a-gw1","call_id":"c60","session_id":"s59","function":"unknown","status":"error","code":11,"detail":"upstream timeout","latency_us":2000000,"prev":"h60","hash":"h61"}`
	lineRejected       = `{"seq":70,"time":"2026-11-26T05:01:00.000000000Z","event":"request.rejected","gateway":"site-a-gw1","call_id":"c70","session_id":"s69","listener":"plc1","source":{"ip":"10.0.6.9","port":40001},"principal":{"auth":"none"},"target":{"name":"plc1","upstream":"tcp://10.0.0.20:502","unit_id":1},"protocol":"modbus","operation":{"function":"read_holding_registers","access":"read","code":3,"address":0,"quantity":0},"reason":"quantity_out_of_range","detail":"quantity 0 not in 1..125","response":"exception 3","prev":"h69","hash":"h70"}`
	lineRejectedBare   = `{"seq":71,"time":"2026-11-26T05:01:01.000000000Z","event":"request.rejected","gateway":"site-a-gw1","call_id":"c71","session_id":"s69","listener":"plc1","source":{"ip":"10.0.6.9","port":40001},"principal":{"auth":"none"},"target":{"name":"plc1","upstream":"tcp://10.0.0.20:502"},"protocol":"modbus","reason":"bad_protocol_id","detail":"protocol id 7","response":"close","prev":"h70","hash":"h71"}`
	lineRejectedCount  = `{"seq":72,"time":"2026-11-26T05:02:01.000000000Z","event":"request.rejected_suppressed","gateway":"site-a-gw1","listener":"plc1","protocol":"modbus","source":{"ip":"10.0.6.9"},"target":{"name":"plc1","upstream":"tcp://10.0.0.20:502"},"count":495,"reasons":{"bad_protocol_id":195,"quantity_out_of_range":300},"first_time":"2026-11-26T05:01:02.000000000Z","last_time":"2026-11-26T05:01:59.000000000Z","recorded":20,"limit":20,"window_start":"2026-11-26T05:01:00.000000000Z","window_ms":60000,"cause":"window_end","prev":"h71","hash":"h72"}`
	lineSessionOpen    = `{"seq":3,"time":"2026-11-26T04:24:57.666301993Z","event":"session.open","gateway":"site-a-gw1","session_id":"9a393e4f","listener":"plc1","protocol":"modbus","session":{"id":"9a393e4f","started":"2026-11-26T04:24:57.664398107Z"},"source":{"ip":"10.0.5.7","port":55424,"name":"ews-alice","owner":"alice"},"principal":{"user":"alice","auth":"inventory","roles":["engineer"]},"target":{"name":"plc1","upstream":"tcp://10.0.0.20:502"},"success":true,"decision":{"allow":true,"alert":false,"reasons":["session"],"policy_revision":"625cc695ee7ff6e5","decision_id":"d9f7c30b","mode":"enforce"},"prev":"h2","hash":"h3"}`
	lineSessionRefused = `{"seq":80,"time":"2026-11-26T05:02:00.000000000Z","event":"session.open","gateway":"site-a-gw1","session_id":"s80","listener":"plc1","protocol":"modbus","session":{"id":"s80","started":"2026-11-26T05:02:00Z"},"source":{"ip":"10.0.6.9","port":40002},"principal":{"auth":"none"},"target":{"name":"plc1","upstream":"tcp://10.0.0.20:502"},"success":false,"reason":"limit: max_conns","prev":"h79","hash":"h80"}`
	lineSessionClose   = `{"seq":6,"time":"2026-11-26T04:24:57.694339504Z","event":"session.close","gateway":"site-a-gw1","session_id":"9a393e4f","listener":"plc1","source":{"ip":"10.0.5.7","port":55424,"name":"ews-alice","owner":"alice"},"principal":{"user":"alice","auth":"inventory","roles":["engineer"]},"duration_ms":29,"error":"read: connection reset by peer","prev":"h5","hash":"h6"}`
	lineGatewayStart   = `{"seq":2,"time":"2026-11-26T04:24:57.511095608Z","event":"gateway.start","gateway":"site-a-gw1","version":"1.4.0","boot_id":"984770b0","config":"/etc/interlock/config.yaml","policy_revision":"625cc695ee7ff6e5","policy_mode":"enforce","prev":"h1","hash":"h2"}`
	lineGatewayStop    = `{"seq":99,"time":"2026-11-26T06:00:00.000000000Z","event":"gateway.stop","gateway":"site-a-gw1","boot_id":"984770b0","prev":"h98","hash":"h99"}`
	linePolicyFailed   = `{"seq":90,"time":"2026-11-26T05:10:00.000000000Z","event":"policy.load_failed","gateway":"site-a-gw1","error":"policy/x.rego:3: rego_parse_error","prev":"h89","hash":"h90"}`
	lineTLSLoad        = `{"seq":91,"time":"2026-11-26T05:11:00.000000000Z","event":"tls.load","gateway":"site-a-gw1","listener":"plc1-tls","paths":["/etc/interlock/gw.crt","/etc/interlock/gw.key","/etc/interlock/clients-ca.crt","/etc/interlock/clients.crl"],"cert_subject":"CN=interlock gateway","cert_thumbprint":"5b1e0f1c9d2a7e3b4c6d8e0f1a2b3c4d5e6f7a8b","cert_not_after":"2027-11-26T00:00:00Z","crls":1,"revoked_certificates":2,"sessions_ended":1,"stale_crls":["the CRL of \"CN=clients CA\" was due for its next update at 2026-11-20T00:00:00Z"],"prev":"h90","hash":"h91"}`
	lineTLSFailed      = `{"seq":92,"time":"2026-11-26T05:12:00.000000000Z","event":"tls.load_failed","gateway":"site-a-gw1","listener":"plc1-tls","paths":["/etc/interlock/gw.crt","/etc/interlock/gw.key","/etc/interlock/clients-ca.crt","/etc/interlock/clients.crl"],"cert_subject":"CN=interlock gateway","cert_thumbprint":"5b1e0f1c9d2a7e3b4c6d8e0f1a2b3c4d5e6f7a8b","cert_not_after":"2027-11-26T00:00:00Z","crls":1,"revoked_certificates":2,"error":"listener plc1-tls: tls.crl: /etc/interlock/clients.crl: CRL 1, of \"CN=other\", is not signed by a CA in tls.client_ca","prev":"h91","hash":"h92"}`
	linePKILoad        = `{"seq":93,"time":"2026-11-26T05:13:00.000000000Z","event":"pki.load","gateway":"site-a-gw1","listener":"line1","paths":["/etc/interlock/pki/trusted/certs","/etc/interlock/pki/trusted/crl","/etc/interlock/pki/issuer/certs","/etc/interlock/pki/issuer/crl","/etc/interlock/user-pki/trusted/certs","/etc/interlock/user-pki/trusted/crl","/etc/interlock/user-pki/issuer/certs","/etc/interlock/user-pki/issuer/crl"],"pki":{"trusted_certs":3,"issuer_certs":1,"crls":1,"revoked_certificates":2},"user_pki":{"trusted_certs":5,"issuer_certs":0,"crls":0,"revoked_certificates":0},"sessions_ended":1,"prev":"h92","hash":"h93"}`
	linePKIFailed      = `{"seq":94,"time":"2026-11-26T05:14:00.000000000Z","event":"pki.load_failed","gateway":"site-a-gw1","listener":"line1","error":"pki: open /etc/interlock/pki/trusted/certs: permission denied","prev":"h93","hash":"h94"}`
	lineUpTLSLoad      = `{"seq":95,"time":"2026-11-26T05:15:00.000000000Z","event":"upstream_tls.load","gateway":"site-a-gw1","listener":"plc1","paths":["/etc/interlock/plc-ca.crt","/etc/interlock/gw-client.crt","/etc/interlock/gw-client.key"],"cert_subject":"CN=interlock gateway","cert_thumbprint":"6c2f0e1d9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d","cert_not_after":"2027-11-26T00:00:00Z","ca_certs":2,"connections_closed":1,"prev":"h94","hash":"h95"}`
	lineUpTLSFailed    = `{"seq":96,"time":"2026-11-26T05:16:00.000000000Z","event":"upstream_tls.load_failed","gateway":"site-a-gw1","listener":"plc1","paths":["/etc/interlock/plc-ca.crt","/etc/interlock/gw-client.crt","/etc/interlock/gw-client.key"],"cert_subject":"CN=interlock gateway","cert_thumbprint":"6c2f0e1d9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d","cert_not_after":"2027-11-26T00:00:00Z","ca_certs":2,"error":"listener plc1: modbus.upstream_tls.key: /etc/interlock/gw-client.key is not the key of the certificate in /etc/interlock/gw-client.crt (tls: private key does not match public key)","prev":"h95","hash":"h96"}`
	lineTicketOpen     = `{"seq":45,"time":"2026-11-26T04:24:59.341205088Z","event":"ticket.open","gateway":"site-a-gw1","ticket_id":"T-1","by":"root","ticket":{"id":"T-1","user":"alice","targets":["plc1"],"access":["write"],"reason":"CHG-1234"},"prev":"h44","hash":"h45"}`
	lineCheckpoint     = `{"seq":1001,"time":"2026-11-26T05:20:00.000000000Z","event":"audit.checkpoint","gateway":"site-a-gw1","checkpoint":{"gateway":"site-a-gw1","seq":1000,"hash":"h1000","time":"2026-11-26T05:20:00.000000000Z","boot_id":"984770b0","key_id":"k1","reason":"count","every":1000,"interval_ms":60000},"signature":"c2ln","prev":"h1000","hash":"h1001"}`
	lineRecovered      = `{"seq":100,"time":"2026-11-26T06:10:00.000000000Z","event":"audit.recovered","gateway":"site-a-gw1","truncated_bytes":77,"truncated_offset":123456,"prev":"h99","hash":"h100"}`
	lineFuture         = `{"seq":101,"time":"2026-11-26T06:10:01.000000000Z","event":"opcua.secure_channel","gateway":"site-a-gw1","status":{"code":"Bad"},"reason":["x"],"prev":"h100","hash":"h101"}`
)

// parse decodes a test line.
func parse(t testing.TB, line string) *query.Record {
	t.Helper()
	r, err := query.Parse([]byte(line))
	if err != nil {
		t.Fatalf("%v: %s", err, line)
	}
	r.File = "/var/lib/interlock/audit/audit.jsonl"
	return r
}

// joined is a call with its result, as query.Query hands it over.
func joined(t testing.TB, call, result string) *query.Record {
	t.Helper()
	c := parse(t, call)
	c.Result = parse(t, result)
	return c
}

// eventKinds is one record of every kind export must handle.
func eventKinds(t testing.TB) map[string]*query.Record {
	return map[string]*query.Record{
		"call denied":                        joined(t, lineCallDenied, lineResultDenied),
		"call allowed read":                  joined(t, lineCallRead, lineResultOK),
		"call allowed, exception":            joined(t, lineCallWrite, lineResultExc),
		"call monitor-denied, error, IPv6":   joined(t, lineCallProg, lineResultMon),
		"call without result":                parse(t, lineCallRead),
		"result alone":                       parse(t, lineResultExc),
		"request.rejected":                   parse(t, lineRejected),
		"request.rejected without operation": parse(t, lineRejectedBare),
		"request.rejected_suppressed":        parse(t, lineRejectedCount),
		"session.open":                       parse(t, lineSessionOpen),
		"session.open refused":               parse(t, lineSessionRefused),
		"session.close with error":           parse(t, lineSessionClose),
		"gateway.start":                      parse(t, lineGatewayStart),
		"gateway.stop":                       parse(t, lineGatewayStop),
		"policy.load_failed":                 parse(t, linePolicyFailed),
		"tls.load":                           parse(t, lineTLSLoad),
		"tls.load_failed":                    parse(t, lineTLSFailed),
		"pki.load":                           parse(t, linePKILoad),
		"pki.load_failed":                    parse(t, linePKIFailed),
		"upstream_tls.load":                  parse(t, lineUpTLSLoad),
		"upstream_tls.load_failed":           parse(t, lineUpTLSFailed),
		"ticket.open":                        parse(t, lineTicketOpen),
		"audit.checkpoint":                   parse(t, lineCheckpoint),
		"audit.recovered":                    parse(t, lineRecovered),
		"unknown event":                      parse(t, lineFuture),
	}
}
