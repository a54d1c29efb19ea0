package report

import (
	"errors"
	"time"

	"github.com/interlock-ics/interlock/audit"
)

// DefaultMaxRows is how many rows a table keeps when Options.MaxRows is 0.
const DefaultMaxRows = 200

// maxKeys bounds the distinct values tracked per dimension (users, sources,
// targets, functions, reasons …); past it counts go to "other" and the
// report says the distinct counts are lower bounds.
const maxKeys = 10000

// Options say what to report on.
type Options struct {
	// Files are the log's files in chain order (audit.LogFiles).
	Files []string
	// From and To bound the period, [From, To); a zero time leaves that
	// side open. Records outside the period still count for first-seen
	// values and for the policy revision in effect.
	From, To time.Time
	Title    string
	// Windows are the maintenance windows calls are judged by; nil when
	// no window data was given, and WindowsNote then says why.
	Windows     *Windows
	WindowsNote string
	// Listeners are the configured listeners, to find those that saw no
	// traffic; nil when no configuration was given.
	Listeners []Listener
	Config    string // the configuration file, for the report's header
	// MaxRows bounds each table; its total is always exact.
	MaxRows int
	// Verify checks the chain; ChainVerifier with no key when nil.
	Verify Verifier
	// Version of the tool, in the report's footer.
	Version string
	Now     func() time.Time
}

// Listener is one configured listener.
type Listener struct {
	Name, Protocol, Listen, Upstream string
}

// CheckAndSetDefaults reports missing options and fills in the rest.
func (o *Options) CheckAndSetDefaults() error {
	if len(o.Files) == 0 {
		return errors.New("report: no audit log files")
	}
	if !o.From.IsZero() && !o.To.IsZero() && !o.To.After(o.From) {
		return errors.New("report: the period ends before it starts (--to is not after --from)")
	}
	if o.MaxRows <= 0 {
		o.MaxRows = DefaultMaxRows
	}
	if o.Verify == nil {
		o.Verify = ChainVerifier(audit.VerifyOptions{})
	}
	if o.Title == "" {
		o.Title = "Interlock audit evidence report"
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Version == "" {
		o.Version = "dev"
	}
	return nil
}

func (o *Options) inPeriod(t time.Time) bool {
	return (o.From.IsZero() || !t.Before(o.From)) && (o.To.IsZero() || t.Before(o.To))
}
