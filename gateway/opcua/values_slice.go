package opcua

import (
	"fmt"
	"reflect"
)

// plainSlice turns the slices gopcua decodes arrays into ([]float64,
// [][]int32 …) into []any, cut at maxPlainElems or where b runs out.
func plainSlice(x any, depth int, b *plainBudget) any {
	rv := reflect.ValueOf(x)
	if rv.Kind() != reflect.Slice && rv.Kind() != reflect.Array {
		return b.str(fmt.Sprintf("%v", x))
	}
	n := min(rv.Len(), maxPlainElems)
	out := make([]any, 0, n+1)
	for i := range n {
		if b.left <= 0 {
			break
		}
		out = append(out, plain(rv.Index(i).Interface(), depth+1, b))
	}
	if len(out) < rv.Len() {
		out = append(out, more(rv.Len()-len(out)))
	}
	return out
}

// more is the element that ends a cut list: how many elements were left out.
func more(n int) string { return fmt.Sprintf("… %d more", n) }
