package opcua

import (
	"encoding/base64"
	"fmt"
	"math"
	"time"

	"github.com/gopcua/opcua/ua"
)

// nodeIDString is a node id in OPC UA text form (ns=1;s=Setpoint, i=2258);
// "" for none.
func nodeIDString(n *ua.NodeID) string {
	if n == nil {
		return ""
	}
	return n.String()
}

func expandedString(n *ua.ExpandedNodeID) string {
	if n == nil || n.NodeID == nil {
		return ""
	}
	return n.NodeID.String()
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

// maxPlainElems bounds the elements of an array value given to the policy
// and the audit record; longer arrays are cut, and say so.
const maxPlainElems = 1024

// plainValue is a Variant's value as plain JSON (nil, bool, int64, float64,
// string, []any, map[string]any), for the policy input and the audit record.
func plainValue(v *ua.Variant) any {
	if v == nil {
		return nil
	}
	return plain(v.Value(), 0)
}

func plain(x any, depth int) any {
	if depth > 8 {
		return "…"
	}
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
		return x
	case ua.XMLElement:
		return string(x)
	case []byte:
		return base64.StdEncoding.EncodeToString(x)
	case time.Time:
		return x.UTC().Format(time.RFC3339Nano)
	case *ua.GUID:
		return x.String()
	case *ua.NodeID:
		return nodeIDString(x)
	case *ua.ExpandedNodeID:
		return expandedString(x)
	case ua.StatusCode:
		return int64(uint32(x))
	case *ua.QualifiedName:
		if x == nil {
			return nil
		}
		return x.Name
	case *ua.LocalizedText:
		if x == nil {
			return nil
		}
		return x.Text
	case *ua.Variant: // in an array of Variants, or nested: depth counts on
		if x == nil {
			return nil
		}
		return plain(x.Value(), depth+1)
	case *ua.DataValue:
		if x == nil || x.Value == nil {
			return nil
		}
		return plain(x.Value.Value(), depth+1)
	case *ua.ExtensionObject:
		if x == nil {
			return nil
		}
		return map[string]any{"type_id": expandedString(x.TypeID), "value": fmt.Sprintf("%v", x.Value)}
	}
	// Arrays: []T of the types above, decoded by gopcua.
	return plainSlice(x, depth)
}

func plainFloat(f float64) any {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return fmt.Sprint(f) // JSON has no NaN or infinity
	}
	return f
}
