package opcua

import (
	"fmt"
	"reflect"
)

// plainSlice turns the slices gopcua decodes arrays into ([]float64,
// [][]int32 …) into []any, cut at maxPlainElems.
func plainSlice(x any, depth int) any {
	rv := reflect.ValueOf(x)
	if rv.Kind() != reflect.Slice && rv.Kind() != reflect.Array {
		return fmt.Sprintf("%v", x)
	}
	n := rv.Len()
	cut := n > maxPlainElems
	if cut {
		n = maxPlainElems
	}
	out := make([]any, 0, n+1)
	for i := range n {
		out = append(out, plain(rv.Index(i).Interface(), depth+1))
	}
	if cut {
		out = append(out, fmt.Sprintf("… %d more", rv.Len()-maxPlainElems))
	}
	return out
}
