package main

import (
	"slices"
	"strconv"
	"strings"

	"github.com/interlock-ics/interlock/audit/query"
	"github.com/interlock-ics/interlock/gateway"
	"github.com/interlock-ics/interlock/gateway/modbus"
)

// The operation.function names the engines write, for --function: a name
// that is none of them would match nothing. The tests hold them to the
// engines' sources and to gopcua's services.
var (
	modbusFunctions = []string{
		modbus.FunctionReadCoils, modbus.FunctionReadDiscreteInputs, modbus.FunctionReadHoldingRegisters,
		modbus.FunctionReadInputRegisters, modbus.FunctionWriteSingleCoil, modbus.FunctionWriteSingleRegister,
		modbus.FunctionReadExceptionStatus, modbus.FunctionDiagnostics, modbus.FunctionGetCommEventCounter,
		modbus.FunctionGetCommEventLog, modbus.FunctionWriteMultipleCoils, modbus.FunctionWriteMultipleRegisters,
		modbus.FunctionReportServerID, modbus.FunctionReadFileRecord, modbus.FunctionWriteFileRecord,
		modbus.FunctionMaskWriteRegister, modbus.FunctionReadWriteMultipleRegisters, modbus.FunctionReadFIFOQueue,
		modbus.FunctionReadDeviceIdentification, modbus.FunctionCANopenGeneralReference, modbus.FunctionUnknown,
	}
	// One per operation item (docs/opcua.md, "Policy input"), and the
	// service's name for a request refused whole (any service of OPC
	// 10000-4), a secure channel or session step, or a message that is no
	// request.
	opcuaFunctions = []string{
		"read", "write", "history_read", "history_update", "call",
		"browse", "browse_next", "translate_browse_paths", "translate_browse_paths_to_node_ids",
		"register_nodes", "unregister_nodes",
		"add_nodes", "add_references", "delete_nodes", "delete_references",
		"create_subscription", "modify_subscription", "set_publishing_mode", "delete_subscriptions",
		"transfer_subscriptions", "publish", "republish",
		"create_monitored_items", "modify_monitored_items", "set_monitoring_mode", "set_triggering", "delete_monitored_items",
		"query_first", "query_next",
		"find_servers", "find_servers_on_network", "get_endpoints", "register_server", "register_server2",
		"open_secure_channel", "close_secure_channel", "create_session", "activate_session", "close_session", "cancel",
		"request",
	}
	sessionFunctions = []string{gateway.FunctionSessionOpen, gateway.FunctionSessionAuthFailed}
)

// checkEvents refuses an --event value that names no event the gateway
// writes, or a glob that matches none.
func checkEvents(cmd string, values []string) error {
	for _, v := range values {
		if !matchesAny(v, query.Events) {
			return usageErr("%s: --event %q %s; the events: %s", cmd, v, noMatch(v, "event the gateway writes"),
				strings.Join(query.Events, ", "))
		}
	}
	return nil
}

// checkFunctions refuses a --function value that is no function name, glob
// of one, or function code.
func checkFunctions(cmd string, values []string) error {
	for _, v := range values {
		if n, err := strconv.Atoi(v); err == nil {
			if n < 0 || n > 255 {
				return usageErr("%s: --function %d: a function code is 0 to 255", cmd, n)
			}
			continue
		}
		if !matchesAny(v, modbusFunctions) && !matchesAny(v, opcuaFunctions) && !matchesAny(v, sessionFunctions) {
			return usageErr("%s: --function %q %s; give a name, a glob such as write_*, or a function code such as 16. "+
				"Modbus: %s. OPC UA: %s. Sessions: %s", cmd, v, noMatch(v, "Modbus or OPC UA function"),
				strings.Join(modbusFunctions, ", "), strings.Join(opcuaFunctions, ", "), strings.Join(sessionFunctions, ", "))
		}
	}
	return nil
}

func matchesAny(pattern string, names []string) bool {
	return slices.ContainsFunc(names, func(n string) bool { return query.Glob(pattern, n) })
}

// noMatch says why v matches nothing: a name that is no kind, or a glob
// that matches none.
func noMatch(v, kind string) string {
	if strings.Contains(v, "*") {
		return "matches no " + kind
	}
	return "is no " + kind
}
