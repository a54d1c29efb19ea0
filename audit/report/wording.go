package report

import (
	"fmt"
	"time"
)

// The report counts in words: "1 call", "2 calls", "1 call was", never
// "call(s)". A plural is the word with an s unless given.

// plural is n with digits grouped and the word for n: "1 call", "2,310 calls".
func plural(n int64, one string, many ...string) string {
	return groupDigits(n) + " " + word(n, one, many...)
}

// word is one for a count of 1, otherwise many[0] or one+"s".
func word(n int64, one string, many ...string) string {
	if n == 1 {
		return one
	}
	if len(many) > 0 {
		return many[0]
	}
	return one + "s"
}

// were is the verb for a count: "was" for 1, "were" otherwise.
func were(n int64) string {
	return word(n, "was", "were")
}

// times says how often: once, twice, 3 times.
func times(n int64) string {
	switch n {
	case 1:
		return "once"
	case 2:
		return "twice"
	}
	return groupDigits(n) + " times"
}

// count reads a template's count of any integer type.
func count(v any) int64 {
	switch n := v.(type) {
	case int:
		return int64(n)
	case int64:
		return n
	case uint64:
		return int64(n)
	case int32:
		return int64(n)
	}
	panic(fmt.Sprintf("report: %T is not a count", v))
}

// perWidth names a bucket width as it reads after "per": second, 10
// seconds, minute, 5 minutes, hour, day, week, 4 weeks; under a second, ms.
func perWidth(d time.Duration) string {
	const day, week = 24 * time.Hour, 7 * 24 * time.Hour
	for _, u := range []struct {
		d    time.Duration
		name string
	}{{week, "week"}, {day, "day"}, {time.Hour, "hour"}, {time.Minute, "minute"}, {time.Second, "second"}} {
		if d >= u.d && d%u.d == 0 {
			if n := d / u.d; n > 1 {
				return fmt.Sprintf("%d %ss", n, u.name)
			}
			return u.name
		}
	}
	return humanDuration(d)
}
