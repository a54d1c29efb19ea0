// Package admin is the gateway's local administration interface: an HTTP
// API on a Unix socket, through which `interlock ticket …` opens, approves,
// lists and closes change tickets on a running gateway. The caller is
// authenticated by the kernel (the socket peer's user id), never by what it
// claims; every change is recorded in the audit log before it takes effect.
package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/user"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/interlock-ics/interlock/gateway"
	"github.com/interlock-ics/interlock/policy"
)

// Server serves the admin API.
type Server struct {
	Tickets *policy.Tickets
	// Allowed are the user ids that may use the API (the gateway's runner
	// puts its own user in).
	Allowed map[uint32]bool
	// Targets are the target names the gateway serves; a ticket for
	// another is refused (nil: any).
	Targets []string
	Log     zerolog.Logger
	// Refused, when set, records a refused request (a caller not allowed,
	// a self-approval, a bad ticket) in the audit log: refused attempts at
	// access control are evidence too.
	Refused func(Refusal)

	// strangers holds back the records of callers not allowed at all: any
	// local user can reach a socket others may use, and must not flood the
	// audit log (and push older records out through retention).
	strangers gateway.Every
}

// Refusal is one refused admin request.
type Refusal struct {
	Action   string       // open, approve, close, list
	By       string       // the caller as the kernel names it
	TicketID string       // the ticket named, if any
	Open     *OpenRequest // the ticket asked for (open)
	Reason   string       // why it was refused
	// Repeats counts the refusals of callers not allowed that were not
	// recorded since the last one that was (at most one every 10 s).
	Repeats int
}

// refuse answers a refused request and records it.
func (s *Server) refuse(w http.ResponseWriter, code int, rf Refusal) {
	s.Log.Warn().Str("action", rf.Action).Str("by", rf.By).Str("ticket", rf.TicketID).Str("reason", rf.Reason).
		Msg("admin: request refused")
	if s.Refused != nil {
		s.Refused(rf)
	}
	writeErr(w, code, errors.New(rf.Reason))
}

// action names what a request asks for.
func action(r *http.Request) string {
	switch {
	case r.Method == http.MethodGet:
		return "list"
	case strings.HasSuffix(r.URL.Path, "/approve"):
		return "approve"
	case strings.HasSuffix(r.URL.Path, "/close"):
		return "close"
	default:
		return "open"
	}
}

type peerKey struct{}

// peer is the authenticated caller of one connection.
type peer struct {
	uid  uint32
	name string
}

// Listen creates the socket (replacing a stale one) with the given file
// mode: 0600 when only the gateway's user administers it; other users need
// to reach the file, and are then told apart by the kernel's credentials.
func Listen(path string, mode os.FileMode) (*net.UnixListener, error) {
	if fi, err := os.Lstat(path); err == nil && fi.Mode()&os.ModeSocket == 0 {
		return nil, fmt.Errorf("admin: %s is there and is not a socket: the gateway will not replace it", path)
	}
	if fi, err := os.Lstat(path); err == nil && fi.Mode()&os.ModeSocket != 0 {
		if c, err := net.Dial("unix", path); err == nil {
			c.Close()
			return nil, fmt.Errorf("admin: %s is in use by another gateway", path)
		}
		os.Remove(path)
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("admin: %w", err)
	}
	if err := os.Chmod(path, mode); err != nil {
		ln.Close()
		return nil, fmt.Errorf("admin: %w", err)
	}
	return ln, nil
}

// Serve answers requests on ln until ctx is done.
func (s *Server) Serve(ctx context.Context, ln *net.UnixListener) error {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/tickets", s.list)
	mux.HandleFunc("POST /v1/tickets", s.open)
	mux.HandleFunc("POST /v1/tickets/{id}/approve", s.approve)
	mux.HandleFunc("POST /v1/tickets/{id}/close", s.close)
	srv := &http.Server{
		Handler:           s.authenticate(mux),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      10 * time.Second,
		MaxHeaderBytes:    16 << 10,
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			return context.WithValue(ctx, peerKey{}, peerOf(c))
		},
	}
	stop := context.AfterFunc(ctx, func() { srv.Close() })
	defer stop()
	err := srv.Serve(ln)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// peerOf reads the kernel's credentials of the socket's other end.
func peerOf(c net.Conn) *peer {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return nil
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return nil
	}
	var cred *syscall.Ucred
	var cerr error
	if err := raw.Control(func(fd uintptr) {
		cred, cerr = syscall.GetsockoptUcred(int(fd), syscall.SOL_SOCKET, syscall.SO_PEERCRED)
	}); err != nil || cerr != nil {
		return nil
	}
	name := "uid:" + strconv.Itoa(int(cred.Uid))
	if u, err := user.LookupId(strconv.Itoa(int(cred.Uid))); err == nil {
		name = u.Username
	}
	return &peer{uid: cred.Uid, name: name}
}

func (s *Server) authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, _ := r.Context().Value(peerKey{}).(*peer)
		if p == nil || !s.Allowed[p.uid] {
			who := "unknown"
			if p != nil {
				who = p.name
			}
			id, _, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/v1/tickets/"), "/") // not routed yet
			if !strings.HasPrefix(r.URL.Path, "/v1/tickets/") {
				id = ""
			}
			rf := Refusal{Action: action(r), By: who, TicketID: id,
				Reason: fmt.Sprintf("user %s may not administer this gateway (admin.allowed_users)", who)}
			n, ok := s.strangers.Allow(time.Now())
			if !ok {
				writeErr(w, http.StatusForbidden, errors.New(rf.Reason)) // counted in the next record
				return
			}
			rf.Repeats = n
			if rf.Action == "open" {
				// the ticket asked for, as far as the body says
				var req OpenRequest
				if json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10)).Decode(&req) == nil {
					rf.Open, rf.TicketID = &req, req.ID
				}
			}
			s.refuse(w, http.StatusForbidden, rf)
			return
		}
		next.ServeHTTP(w, r)
	})
}

func by(r *http.Request) string { return r.Context().Value(peerKey{}).(*peer).name }

// OpenRequest is the body of POST /v1/tickets.
type OpenRequest struct {
	ID       string   `json:"id,omitempty"`
	User     string   `json:"user"`
	Targets  []string `json:"targets"`
	Access   []string `json:"access"`
	Reason   string   `json:"reason"`
	Duration string   `json:"duration"` // such as 2h
}

func (s *Server) open(w http.ResponseWriter, r *http.Request) {
	var req OpenRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		s.refuse(w, http.StatusBadRequest, Refusal{Action: "open", By: by(r), Reason: fmt.Sprintf("request body: %v", err)})
		return
	}
	bad := func(format string, args ...any) {
		s.refuse(w, http.StatusBadRequest, Refusal{Action: "open", By: by(r), TicketID: req.ID, Open: &req, Reason: fmt.Sprintf(format, args...)})
	}
	d, err := time.ParseDuration(req.Duration)
	if err != nil {
		bad("duration %q is not a duration such as 2h", req.Duration)
		return
	}
	if s.Targets != nil {
		for _, name := range req.Targets {
			if !slices.Contains(s.Targets, name) {
				bad("target %q is not served by this gateway (its targets: %s)", name, strings.Join(s.Targets, ", "))
				return
			}
		}
	}
	t, err := s.Tickets.Open(policy.Ticket{ID: req.ID, User: req.User, Targets: req.Targets, Access: req.Access, Reason: req.Reason}, d, by(r))
	s.reply(w, r, Refusal{Action: "open", TicketID: req.ID, Open: &req}, t, err)
}

func (s *Server) approve(w http.ResponseWriter, r *http.Request) {
	t, err := s.Tickets.Approve(r.PathValue("id"), by(r))
	s.reply(w, r, Refusal{Action: "approve", TicketID: r.PathValue("id")}, t, err)
}

func (s *Server) close(w http.ResponseWriter, r *http.Request) {
	t, err := s.Tickets.Close(r.PathValue("id"), by(r))
	s.reply(w, r, Refusal{Action: "close", TicketID: r.PathValue("id")}, t, err)
}

func (s *Server) list(w http.ResponseWriter, _ *http.Request) {
	ts := s.Tickets.List()
	if ts == nil {
		ts = []policy.Ticket{} // [], not null: the answer is a list
	}
	writeJSON(w, http.StatusOK, ts)
}

// reply answers a ticket change: the ticket, or why it was refused (rf
// names the request).
func (s *Server) reply(w http.ResponseWriter, r *http.Request, rf Refusal, t policy.Ticket, err error) {
	if errors.Is(err, policy.ErrNotSaved) {
		// recorded and in force: the caller gets the ticket and the fault
		s.Log.Error().Err(err).Str("ticket", t.ID).Str("by", by(r)).Msg("ticket " + rf.Action + ": in force, but the ticket file was not saved")
		w.Header().Set(warningHeader, err.Error())
		writeJSON(w, http.StatusOK, t)
		return
	}
	if err != nil {
		rf.By, rf.Reason = by(r), err.Error()
		s.refuse(w, http.StatusBadRequest, rf)
		return
	}
	s.Log.Info().Str("ticket", t.ID).Str("by", by(r)).Str("user", t.User).Strs("targets", t.Targets).
		Strs("access", t.Access).Time("expires", t.Expires).Msg("ticket " + rf.Action)
	writeJSON(w, http.StatusOK, t)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func writeErr(w http.ResponseWriter, code int, err error) {
	writeJSON(w, code, map[string]string{"error": err.Error()})
}
