package gateway

// Operation is the protocol-specific part of a call: what function, what kind
// of access, and the checked fields (addresses, quantities, values, node ids).
// Function and Access are always present; Fields carries the rest in the
// order the engine added them, under the names of the policy input contract.
type Operation struct {
	Function string
	Access   Access
	Fields   []Field
}

// Kind is the type of a Field's value.
type Kind uint8

// Field kinds.
const (
	KindInt Kind = iota + 1
	KindString
	KindBool
	KindInts
	KindStrings
	KindAny // JSON-compatible value: nil, bool, int64, float64, string, []any, map[string]any
)

// Field is one named value of an Operation.
type Field struct {
	Key  string
	Kind Kind
	Int  int64
	Str  string
	Bool bool
	Ints []int64
	Strs []string
	Any  any
}

// Int appends an integer field.
func (o *Operation) Int(key string, v int64) {
	o.Fields = append(o.Fields, Field{Key: key, Kind: KindInt, Int: v})
}

// String appends a string field.
func (o *Operation) String(key, v string) {
	o.Fields = append(o.Fields, Field{Key: key, Kind: KindString, Str: v})
}

// Bool appends a boolean field.
func (o *Operation) Bool(key string, v bool) {
	o.Fields = append(o.Fields, Field{Key: key, Kind: KindBool, Bool: v})
}

// Ints appends an integer list field.
func (o *Operation) Ints(key string, v []int64) {
	o.Fields = append(o.Fields, Field{Key: key, Kind: KindInts, Ints: v})
}

// Strings appends a string list field.
func (o *Operation) Strings(key string, v []string) {
	o.Fields = append(o.Fields, Field{Key: key, Kind: KindStrings, Strs: v})
}

// Any appends a JSON-compatible field (nested objects and lists).
func (o *Operation) Any(key string, v any) {
	o.Fields = append(o.Fields, Field{Key: key, Kind: KindAny, Any: v})
}

// Field returns the field named key.
func (o *Operation) Field(key string) (Field, bool) {
	for _, f := range o.Fields {
		if f.Key == key {
			return f, true
		}
	}
	return Field{}, false
}
