package opcua

import (
	"encoding/base64"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/gopcua/opcua/ua"

	"github.com/interlock-ics/interlock/gateway/opcua/channel"
)

// nodeIDString is a node id in OPC UA text form (ns=1;s=Setpoint, i=2258);
// "" for none.
func nodeIDString(n *ua.NodeID) string {
	if n == nil {
		return ""
	}
	return n.String()
}

// expandedString is an ExpandedNodeId in its text form (OPC 10000-6
// 5.3.1.11): svr=N; when it names another server, nsu=URI; in place of
// ns=N; when it names its namespace by URI. Policy and audit then see the
// node the client named: gopcua's String drops both, which would make
// nsu=urn:x;s=PLC read as s=PLC, another node.
func expandedString(n *ua.ExpandedNodeID) string {
	if n == nil || n.NodeID == nil {
		return ""
	}
	id := n.NodeID.String()
	if n.NamespaceURI != "" {
		if _, rest, ok := strings.Cut(id, ";"); ok && strings.HasPrefix(id, "ns=") {
			id = rest
		}
		id = "nsu=" + strings.NewReplacer("%", "%25", ";", "%3B").Replace(n.NamespaceURI) + ";" + id
	}
	if n.ServerIndex != 0 {
		id = "svr=" + strconv.FormatUint(uint64(n.ServerIndex), 10) + ";" + id
	}
	return id
}

var attributeNames = [...]string{
	"Invalid", "NodeId", "NodeClass", "BrowseName", "DisplayName", "Description", "WriteMask",
	"UserWriteMask", "IsAbstract", "Symmetric", "InverseName", "ContainsNoLoops", "EventNotifier",
	"Value", "DataType", "ValueRank", "ArrayDimensions", "AccessLevel", "UserAccessLevel",
	"MinimumSamplingInterval", "Historizing", "Executable", "UserExecutable", "DataTypeDefinition",
	"RolePermissions", "UserRolePermissions", "AccessRestrictions", "AccessLevelEx",
}

// attributeName is the attribute's name as in Part 3 (Value, BrowseName …).
func attributeName(id ua.AttributeID) string {
	if int(id) < len(attributeNames) {
		return attributeNames[id]
	}
	return fmt.Sprintf("Attribute%d", uint32(id))
}

var builtinNames = [...]string{
	"Null", "Boolean", "SByte", "Byte", "Int16", "UInt16", "Int32", "UInt32", "Int64", "UInt64",
	"Float", "Double", "String", "DateTime", "Guid", "ByteString", "XmlElement", "NodeId",
	"ExpandedNodeId", "StatusCode", "QualifiedName", "LocalizedText", "ExtensionObject",
	"DataValue", "Variant", "DiagnosticInfo",
}

// typeName is the built-in type name of a Variant ("Double", "Int32" …).
func typeName(v *ua.Variant) string {
	if v == nil {
		return "Null"
	}
	if t := int(v.Type()); t < len(builtinNames) {
		return builtinNames[t]
	}
	return fmt.Sprintf("Type%d", v.Type())
}

// Bounds of the values one call gives the policy and the audit record: a
// Write or Call of megabytes must not cost megabytes of policy input, audit
// log and SIEM traffic, nor a record over the audit's size limit. What is
// cut says so in a string: an array ends with "… N more" (a rule over every
// element, or looking for an element over a limit, cannot pass it: Rego
// orders every string after every number), a string with "… N more bytes"
// (an allow-list of strings does not match it).
const (
	maxPlainElems  = 1024     // elements of one array
	maxPlainString = 4096     // bytes of one string (of a ByteString: of its base64)
	maxPlainTotal  = 64 << 10 // bytes of one call's values, about as JSON
)

// plainBudget is what is left of maxPlainTotal for the values of one call.
type plainBudget struct{ left int }

func newPlainBudget() *plainBudget { return &plainBudget{left: maxPlainTotal} }

// str is s within the bounds, and charges it.
func (b *plainBudget) str(s string) string {
	n := min(len(s), maxPlainString, max(b.left, 0))
	b.left -= n + 2
	if n == len(s) {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n-- // cut at a character
	}
	return s[:n] + fmt.Sprintf("… %d more bytes", len(s)-n)
}

// bytes is x in base64 within the bounds, and charges it; only the part
// kept is encoded.
func (b *plainBudget) bytes(x []byte) string {
	n := min(len(x), base64.StdEncoding.DecodedLen(min(maxPlainString, max(b.left, 0))))
	enc := base64.StdEncoding.EncodeToString(x[:n])
	b.left -= len(enc) + 2
	if n == len(x) {
		return enc
	}
	return enc + fmt.Sprintf("… %d more bytes", len(x)-n)
}

// boundedString is a string field a client gives (an IndexRange) within
// maxPlainString, cut as a value's string is.
func boundedString(s string) string {
	if len(s) <= maxPlainString {
		return s
	}
	b := plainBudget{left: maxPlainTotal}
	return b.str(s)
}

// plainValue is a Variant's value as plain JSON (nil, bool, int64, float64,
// string, []any, map[string]any), for the policy input and the audit record,
// within what is left of b.
func plainValue(v *ua.Variant, b *plainBudget) any {
	if v == nil {
		return nil
	}
	return plain(v.Value(), 0, b)
}

func plain(x any, depth int, b *plainBudget) any {
	if depth > 8 {
		return "…"
	}
	b.left -= 8 // a scalar, or what a string or array adds to its bytes
	switch x := x.(type) {
	case nil:
		return nil
	case bool:
		return x
	case int8:
		return int64(x)
	case uint8:
		return int64(x)
	case int16:
		return int64(x)
	case uint16:
		return int64(x)
	case int32:
		return int64(x)
	case uint32:
		return int64(x)
	case int64:
		return x
	case uint64:
		if x > math.MaxInt64 {
			return float64(x)
		}
		return int64(x)
	case float32:
		return plainFloat(float64(x))
	case float64:
		return plainFloat(x)
	case string:
		return b.str(x)
	case ua.XMLElement:
		return b.str(string(x))
	case []byte:
		return b.bytes(x)
	case time.Time:
		return x.UTC().Format(time.RFC3339Nano)
	case *ua.GUID:
		return x.String()
	case *ua.NodeID:
		return b.str(nodeIDString(x))
	case *ua.ExpandedNodeID:
		return b.str(expandedString(x))
	case ua.StatusCode:
		return int64(uint32(x))
	case *ua.QualifiedName:
		if x == nil {
			return nil
		}
		return b.str(x.Name)
	case *ua.LocalizedText:
		if x == nil {
			return nil
		}
		return b.str(x.Text)
	case *ua.Variant: // in an array of Variants, or nested: depth counts on
		if x == nil {
			return nil
		}
		return plain(x.Value(), depth+1, b)
	case *ua.DataValue:
		if x == nil || x.Value == nil {
			return nil
		}
		return plain(x.Value.Value(), depth+1, b)
	case *ua.ExtensionObject:
		if x == nil {
			return nil
		}
		if o, ok := x.Value.(*channel.Opaque); ok { // a type the codec does not know: its bytes
			return map[string]any{"type_id": b.str(expandedString(x.TypeID)), "body": b.bytes(o.Body)}
		}
		return map[string]any{"type_id": b.str(expandedString(x.TypeID)), "value": b.str(fmt.Sprintf("%v", x.Value))}
	}
	// Arrays: []T of the types above, decoded by gopcua.
	return plainSlice(x, depth, b)
}

func plainFloat(f float64) any {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return fmt.Sprint(f) // JSON has no NaN or infinity
	}
	return f
}
