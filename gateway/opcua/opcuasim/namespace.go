package opcuasim

import (
	"sync"
	"time"

	"github.com/gopcua/opcua/id"
	"github.com/gopcua/opcua/server"
	"github.com/gopcua/opcua/ua"
)

// Node ids of the simulated PLC (namespace 1, under Objects/PLC), the same
// as the node-opcua test server's (gateway/opcua/opcuatest).
const (
	NodePLC         = "ns=1;s=PLC"
	NodeTemperature = "ns=1;s=Temperature" // Double, changes every 100 ms
	NodeSetpoint    = "ns=1;s=Setpoint"    // Double, writable
	NodePressure    = "ns=1;s=Pressure"    // Double
	NodeCounter     = "ns=1;s=Counter"     // Int32, writable
	NodeSpeed       = "ns=1;s=Speed"       // Int32, the speed of the last accepted Start
	NodeStart       = "ns=1;s=Start"       // method of PLC: Start(speed Int32) -> (accepted Boolean)

	nodeStartIn  = "ns=1;s=Start.InputArguments"
	nodeStartOut = "ns=1;s=Start.OutputArguments"
)

// MaxSpeed is the largest speed Start accepts; more is Bad_OutOfRange.
const MaxSpeed = 1000

// NamespaceURI is the name of namespace 1.
const NamespaceURI = "urn:interlock:sim:plc"

// plcNode is one node of the PLC namespace.
type plcNode struct {
	id        *ua.NodeID
	class     ua.NodeClass
	name      string // BrowseName (namespace 1; properties use namespace 0)
	nameNS    uint16
	desc      string
	typeDef   uint32 // HasTypeDefinition target in namespace 0
	dataType  uint32 // variables: DataType in namespace 0
	valueRank int32
	writable  bool
	children  []*plcNode // HasComponent (or HasProperty for properties)
	parent    *plcNode
	property  bool               // referenced with HasProperty from its parent
	value     func() *ua.Variant // properties; variables keep theirs in plcNamespace.values
}

// plcNamespace is namespace 1: a PLC object with variables and a method.
// It implements server.NameSpace so that Read, Write, Browse and the
// subscriptions of gopcua's server see proper attributes (DataType as a
// NodeId, AccessLevel, Executable ...), with its own lock.
type plcNamespace struct {
	srv *server.Server
	id  uint16

	nodes map[string]*plcNode
	plc   *plcNode

	mu     sync.RWMutex
	values map[string]*ua.Variant // the variables' current values, by node id
	stamps map[string]time.Time
}

var _ server.NameSpace = (*plcNamespace)(nil)

func newPLCNamespace(srv *server.Server) *plcNamespace {
	ns := &plcNamespace{
		srv:    srv,
		nodes:  map[string]*plcNode{},
		values: map[string]*ua.Variant{},
		stamps: map[string]time.Time{},
	}
	now := time.Now()
	variable := func(nodeID, name, desc string, dataType uint32, writable bool, v any) *plcNode {
		n := &plcNode{id: ua.MustParseNodeID(nodeID), class: ua.NodeClassVariable, name: name, nameNS: 1, desc: desc,
			typeDef: id.BaseDataVariableType, dataType: dataType, valueRank: -1, writable: writable}
		ns.values[nodeID] = ua.MustVariant(v)
		ns.stamps[nodeID] = now
		return n
	}
	argument := func(name, desc string, dataType uint32) *ua.ExtensionObject {
		return ua.NewExtensionObject(&ua.Argument{
			Name:            name,
			DataType:        ua.NewNumericNodeID(0, dataType),
			ValueRank:       -1,
			ArrayDimensions: []uint32{},
			Description:     &ua.LocalizedText{EncodingMask: ua.LocalizedTextText, Text: desc},
		})
	}
	property := func(nodeID, name string, arg *ua.ExtensionObject) *plcNode {
		v := ua.MustVariant([]*ua.ExtensionObject{arg})
		return &plcNode{id: ua.MustParseNodeID(nodeID), class: ua.NodeClassVariable, name: name, nameNS: 0,
			typeDef: id.PropertyType, dataType: id.Argument, valueRank: 1, property: true,
			value: func() *ua.Variant { return v }}
	}
	start := &plcNode{id: ua.MustParseNodeID(NodeStart), class: ua.NodeClassMethod, name: "Start", nameNS: 1,
		desc: "start the drive at a speed (rpm, at most 1000)"}
	start.children = []*plcNode{
		property(nodeStartIn, "InputArguments", argument("speed", "motor speed, rpm (at most 1000)", id.Int32)),
		property(nodeStartOut, "OutputArguments", argument("accepted", "true when the drive took the command", id.Boolean)),
	}
	ns.plc = &plcNode{id: ua.MustParseNodeID(NodePLC), class: ua.NodeClassObject, name: "PLC", nameNS: 1,
		desc: "a simulated controller", typeDef: id.BaseObjectType}
	ns.plc.children = []*plcNode{
		variable(NodeTemperature, "Temperature", "process temperature, °C", id.Double, false, 20.0),
		variable(NodeSetpoint, "Setpoint", "temperature setpoint, °C", id.Double, true, 50.0),
		variable(NodePressure, "Pressure", "line pressure, bar", id.Double, false, 1.013),
		variable(NodeCounter, "Counter", "a writable counter", id.Int32, true, int32(0)),
		variable(NodeSpeed, "Speed", "speed of the last accepted Start, rpm", id.Int32, false, int32(0)),
		start,
	}
	var index func(parent, n *plcNode)
	index = func(parent, n *plcNode) {
		n.parent = parent
		ns.nodes[n.id.String()] = n
		for _, c := range n.children {
			index(n, c)
		}
	}
	index(nil, ns.plc)
	return ns
}

// get returns a variable's value and source time.
func (ns *plcNamespace) get(nodeID string) (*ua.Variant, time.Time, bool) {
	ns.mu.RLock()
	defer ns.mu.RUnlock()
	v, ok := ns.values[nodeID]
	return v, ns.stamps[nodeID], ok
}

// set stores a variable's value and notifies its monitored items.
func (ns *plcNamespace) set(nodeID string, v *ua.Variant) {
	ns.mu.Lock()
	ns.values[nodeID] = v
	ns.stamps[nodeID] = time.Now()
	ns.mu.Unlock()
	ns.srv.ChangeNotification(ua.MustParseNodeID(nodeID))
}

func (ns *plcNamespace) Name() string    { return NamespaceURI }
func (ns *plcNamespace) ID() uint16      { return ns.id }
func (ns *plcNamespace) SetID(id uint16) { ns.id = id }

// AddNode is not supported: the PLC's address space is fixed.
func (ns *plcNamespace) AddNode(n *server.Node) *server.Node { return n }

// Node returns a gopcua node carrying what other namespaces ask of it when
// they reference this one (browse name, class, type definition).
func (ns *plcNamespace) Node(nid *ua.NodeID) *server.Node {
	if nid == nil {
		return nil
	}
	n := ns.nodes[nid.String()]
	if n == nil {
		return nil
	}
	return server.NewNode(n.id, server.Attributes{
		ua.AttributeIDNodeClass:   server.DataValueFromValue(uint32(n.class)),
		ua.AttributeIDBrowseName:  server.DataValueFromValue(&ua.QualifiedName{NamespaceIndex: n.nameNS, Name: n.name}),
		ua.AttributeIDDisplayName: server.DataValueFromValue(&ua.LocalizedText{EncodingMask: ua.LocalizedTextText, Text: n.name}),
	}, server.References{{
		ReferenceTypeID: ua.NewNumericNodeID(0, id.HasTypeDefinition),
		IsForward:       true,
		NodeID:          ua.NewNumericExpandedNodeID(0, n.typeDef),
	}}, nil)
}

func (ns *plcNamespace) Objects() *server.Node { return ns.Node(ns.plc.id) }
func (ns *plcNamespace) Root() *server.Node    { return ns.Node(ns.plc.id) }

func dataValue(v any, ts time.Time) *ua.DataValue {
	variant, ok := v.(*ua.Variant)
	if !ok {
		variant = ua.MustVariant(v)
	}
	dv := &ua.DataValue{
		EncodingMask:    ua.DataValueValue | ua.DataValueServerTimestamp,
		Value:           variant,
		ServerTimestamp: time.Now(),
	}
	if !ts.IsZero() {
		dv.EncodingMask |= ua.DataValueSourceTimestamp
		dv.SourceTimestamp = ts
	}
	return dv
}

func badValue(code ua.StatusCode) *ua.DataValue {
	return &ua.DataValue{
		EncodingMask:    ua.DataValueStatusCode | ua.DataValueServerTimestamp,
		Status:          code,
		ServerTimestamp: time.Now(),
	}
}

func accessLevel(n *plcNode) byte {
	a := byte(ua.AccessLevelTypeCurrentRead)
	if n.writable {
		a |= byte(ua.AccessLevelTypeCurrentWrite)
	}
	return a
}

// Attribute answers a Read of one attribute.
func (ns *plcNamespace) Attribute(nid *ua.NodeID, attr ua.AttributeID) *ua.DataValue {
	n := ns.nodes[nid.String()]
	if n == nil {
		return badValue(ua.StatusBadNodeIDUnknown)
	}
	switch attr {
	case ua.AttributeIDNodeID:
		return dataValue(n.id, time.Time{})
	case ua.AttributeIDNodeClass:
		return dataValue(int32(n.class), time.Time{})
	case ua.AttributeIDBrowseName:
		return dataValue(&ua.QualifiedName{NamespaceIndex: n.nameNS, Name: n.name}, time.Time{})
	case ua.AttributeIDDisplayName:
		return dataValue(&ua.LocalizedText{EncodingMask: ua.LocalizedTextText, Text: n.name}, time.Time{})
	case ua.AttributeIDDescription:
		return dataValue(&ua.LocalizedText{EncodingMask: ua.LocalizedTextText, Text: n.desc}, time.Time{})
	case ua.AttributeIDWriteMask, ua.AttributeIDUserWriteMask:
		return dataValue(uint32(0), time.Time{})
	}
	switch n.class {
	case ua.NodeClassObject:
		if attr == ua.AttributeIDEventNotifier {
			return dataValue(byte(0), time.Time{})
		}
	case ua.NodeClassMethod:
		if attr == ua.AttributeIDExecutable || attr == ua.AttributeIDUserExecutable {
			return dataValue(true, time.Time{})
		}
	case ua.NodeClassVariable:
		switch attr {
		case ua.AttributeIDValue:
			if n.property {
				return dataValue(n.value(), time.Time{})
			}
			v, ts, _ := ns.get(n.id.String())
			return dataValue(v, ts)
		case ua.AttributeIDDataType:
			return dataValue(ua.NewNumericNodeID(0, n.dataType), time.Time{})
		case ua.AttributeIDValueRank:
			return dataValue(n.valueRank, time.Time{})
		case ua.AttributeIDArrayDimensions:
			if n.valueRank == 1 {
				return dataValue([]uint32{1}, time.Time{})
			}
			return dataValue([]uint32{}, time.Time{})
		case ua.AttributeIDAccessLevel, ua.AttributeIDUserAccessLevel:
			return dataValue(accessLevel(n), time.Time{})
		case ua.AttributeIDMinimumSamplingInterval:
			return dataValue(float64(tick/time.Millisecond), time.Time{})
		case ua.AttributeIDHistorizing:
			return dataValue(false, time.Time{})
		}
	}
	return badValue(ua.StatusBadAttributeIDInvalid)
}

// SetAttribute answers a Write of one attribute: the Value of a writable
// variable, with a value of its data type.
func (ns *plcNamespace) SetAttribute(nid *ua.NodeID, attr ua.AttributeID, dv *ua.DataValue) ua.StatusCode {
	n := ns.nodes[nid.String()]
	switch {
	case n == nil:
		return ua.StatusBadNodeIDUnknown
	case attr != ua.AttributeIDValue:
		return ua.StatusBadNotWritable
	case n.class != ua.NodeClassVariable || !n.writable:
		return ua.StatusBadNotWritable
	case dv == nil || dv.Value == nil:
		return ua.StatusBadTypeMismatch
	}
	want := ua.TypeIDDouble
	if n.dataType == id.Int32 {
		want = ua.TypeIDInt32
	}
	if dv.Value.Type() != want || dv.Value.Has(ua.VariantArrayValues) {
		return ua.StatusBadTypeMismatch
	}
	ns.set(n.id.String(), dv.Value)
	return ua.StatusOK
}

// Browse lists a node's references.
func (ns *plcNamespace) Browse(bd *ua.BrowseDescription) *ua.BrowseResult {
	n := ns.nodes[bd.NodeID.String()]
	if n == nil {
		return &ua.BrowseResult{StatusCode: ua.StatusBadNodeIDUnknown}
	}
	var refs []*ua.ReferenceDescription
	add := func(refType uint32, forward bool, target *ua.ExpandedNodeID, name *ua.QualifiedName, class ua.NodeClass, typeDef uint32) {
		if !direction(bd.BrowseDirection, forward) || !referenceType(bd.ReferenceTypeID, refType, bd.IncludeSubtypes) {
			return
		}
		if bd.NodeClassMask != 0 && bd.NodeClassMask&uint32(class) == 0 {
			return
		}
		td := ua.NewTwoByteExpandedNodeID(0)
		if typeDef != 0 {
			td = ua.NewNumericExpandedNodeID(0, typeDef)
		}
		refs = append(refs, &ua.ReferenceDescription{
			ReferenceTypeID: ua.NewNumericNodeID(0, refType),
			IsForward:       forward,
			NodeID:          target,
			BrowseName:      name,
			DisplayName:     &ua.LocalizedText{EncodingMask: ua.LocalizedTextText, Text: name.Name},
			NodeClass:       class,
			TypeDefinition:  td,
		})
	}
	if n.typeDef != 0 {
		name := "BaseObjectType"
		class := ua.NodeClassObjectType
		switch n.typeDef {
		case id.BaseDataVariableType:
			name, class = "BaseDataVariableType", ua.NodeClassVariableType
		case id.PropertyType:
			name, class = "PropertyType", ua.NodeClassVariableType
		}
		add(id.HasTypeDefinition, true, ua.NewNumericExpandedNodeID(0, n.typeDef), &ua.QualifiedName{Name: name}, class, 0)
	}
	for _, c := range n.children {
		rt := uint32(id.HasComponent)
		if c.property {
			rt = id.HasProperty
		}
		add(rt, true, ua.NewExpandedNodeID(c.id, "", 0), &ua.QualifiedName{NamespaceIndex: c.nameNS, Name: c.name}, c.class, c.typeDef)
	}
	switch {
	case n.parent == nil:
		add(id.Organizes, false, ua.NewNumericExpandedNodeID(0, id.ObjectsFolder), &ua.QualifiedName{Name: "Objects"}, ua.NodeClassObject, id.FolderType)
	case n.property:
		add(id.HasProperty, false, ua.NewExpandedNodeID(n.parent.id, "", 0), &ua.QualifiedName{NamespaceIndex: 1, Name: n.parent.name}, n.parent.class, n.parent.typeDef)
	default:
		add(id.HasComponent, false, ua.NewExpandedNodeID(n.parent.id, "", 0), &ua.QualifiedName{NamespaceIndex: 1, Name: n.parent.name}, n.parent.class, n.parent.typeDef)
	}
	return &ua.BrowseResult{StatusCode: ua.StatusGood, References: refs}
}

func direction(d ua.BrowseDirection, forward bool) bool {
	switch d {
	case ua.BrowseDirectionBoth:
		return true
	case ua.BrowseDirectionInverse:
		return !forward
	default:
		return forward
	}
}

// The reference type hierarchy this namespace uses: HasComponent and
// HasProperty are Aggregates, HasChild and HierarchicalReferences;
// Organizes is a HierarchicalReferences; HasTypeDefinition is a
// NonHierarchicalReferences.
var supertypes = map[uint32][]uint32{
	id.HasComponent:      {id.Aggregates, id.HasChild, id.HierarchicalReferences, id.References},
	id.HasProperty:       {id.Aggregates, id.HasChild, id.HierarchicalReferences, id.References},
	id.Organizes:         {id.HierarchicalReferences, id.References},
	id.HasTypeDefinition: {id.NonHierarchicalReferences, id.References},
}

func referenceType(want *ua.NodeID, ref uint32, subtypes bool) bool {
	if want == nil || (want.Namespace() == 0 && want.IntID() == 0) {
		return true
	}
	if want.Namespace() != 0 {
		return false
	}
	if want.IntID() == ref {
		return true
	}
	if !subtypes {
		return false
	}
	for _, s := range supertypes[ref] {
		if s == want.IntID() {
			return true
		}
	}
	return false
}
