package audit

import "fmt"

// Messages count in words, "1 file", "2 files", never "file(s)": the
// verifier's and the CLI's alike.

// Plural is n with the singular or plural of a noun: "1 file", "2 files";
// many is the plural when it is not one+"s".
func Plural[N ~int | ~int64 | ~uint64](n N, one string, many ...string) string {
	return fmt.Sprintf("%d %s", n, Noun(n, one, many...))
}

// Noun is one for n == 1, else the plural (many, or one+"s").
func Noun[N ~int | ~int64 | ~uint64](n N, one string, many ...string) string {
	switch {
	case n == 1:
		return one
	case len(many) > 0:
		return many[0]
	}
	return one + "s"
}
