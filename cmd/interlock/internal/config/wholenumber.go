package config

import (
	"fmt"
	"math"
	"reflect"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

var (
	unmarshalerType = reflect.TypeFor[yaml.Unmarshaler]()
	durationType    = reflect.TypeFor[time.Duration]()
	nodeType        = reflect.TypeFor[yaml.Node]()
)

// fractionFor returns the first number with a fraction (1.5) in n that
// decodes into a whole-number field of t, and its key: yaml.v3 drops the
// fraction without a word (max_conns: 0.5 would become 0, the default).
func fractionFor(n *yaml.Node, t reflect.Type, key string) (*yaml.Node, string) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		return fractionFor(n.Content[0], t, key)
	}
	if t == durationType || t == nodeType || reflect.PointerTo(t).Implements(unmarshalerType) {
		return nil, "" // decoded its own way, fractions checked there
	}
	switch t.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!float" {
			if f, err := strconv.ParseFloat(strings.ReplaceAll(n.Value, "_", ""), 64); err != nil || f != math.Trunc(f) {
				return n, key
			}
		}
	case reflect.Slice, reflect.Array:
		if n.Kind == yaml.SequenceNode {
			for i, item := range n.Content {
				if bad, k := fractionFor(item, t.Elem(), fmt.Sprintf("%s[%d]", key, i)); bad != nil {
					return bad, k
				}
			}
		}
	case reflect.Map:
		if n.Kind == yaml.MappingNode {
			for i := 0; i+1 < len(n.Content); i += 2 {
				if bad, k := fractionFor(n.Content[i+1], t.Elem(), joinKey(key, n.Content[i].Value)); bad != nil {
					return bad, k
				}
			}
		}
	case reflect.Struct:
		if n.Kind == yaml.MappingNode {
			for i := 0; i+1 < len(n.Content); i += 2 {
				if f, ok := yamlField(t, n.Content[i].Value); ok {
					if bad, k := fractionFor(n.Content[i+1], f.Type, joinKey(key, n.Content[i].Value)); bad != nil {
						return bad, k
					}
				}
			}
		}
	}
	return nil, ""
}

// yamlField returns the field of struct t that the key decodes into.
func yamlField(t reflect.Type, key string) (reflect.StructField, bool) {
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		if name == key {
			return f, true
		}
	}
	return reflect.StructField{}, false
}

// checkWholeNumbers refuses a number with a fraction where a whole number
// is wanted, naming its line and key (as yamlError does "abc").
func checkWholeNumbers(file string, n *yaml.Node, into any, key string) error {
	bad, k := fractionFor(n, reflect.TypeOf(into), key)
	if bad == nil {
		return nil
	}
	return &Error{File: file, Line: bad.Line, Key: k, Msg: fmt.Sprintf("%q is not a whole number", bad.Value)}
}
