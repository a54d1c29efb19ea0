package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"time"

	"github.com/interlock-ics/interlock/policy"
)

// Client calls the admin API of a running gateway on its socket.
type Client struct {
	Socket string
	hc     *http.Client
}

// NewClient returns a client for the socket at path.
func NewClient(path string) *Client {
	return &Client{Socket: path, hc: &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		}},
	}}
}

// Open opens a ticket.
func (c *Client) Open(req OpenRequest) (policy.Ticket, error) {
	var t policy.Ticket
	return t, c.do(http.MethodPost, "/v1/tickets", req, &t)
}

// Approve approves a ticket as the calling user.
func (c *Client) Approve(id string) (policy.Ticket, error) {
	var t policy.Ticket
	return t, c.do(http.MethodPost, "/v1/tickets/"+url.PathEscape(id)+"/approve", nil, &t)
}

// Close closes a ticket.
func (c *Client) Close(id string) (policy.Ticket, error) {
	var t policy.Ticket
	return t, c.do(http.MethodPost, "/v1/tickets/"+url.PathEscape(id)+"/close", nil, &t)
}

// List returns the open tickets.
func (c *Client) List() ([]policy.Ticket, error) {
	var ts []policy.Ticket
	return ts, c.do(http.MethodGet, "/v1/tickets", nil, &ts)
}

func (c *Client) do(method, path string, body, out any) error {
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, "http://interlock"+path, r)
	if err != nil {
		return err
	}
	resp, err := c.hc.Do(req)
	switch {
	case errors.Is(err, os.ErrPermission):
		return fmt.Errorf("the gateway's admin socket %s: %w (only the gateway's user and admin.allowed_users may use it)", c.Socket, err)
	case err != nil:
		return fmt.Errorf("the gateway's admin socket %s: %w (is the gateway running with admin.socket set?)", c.Socket, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20)) // 1024 tickets of 512-byte reasons and more
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(b, &e) == nil && e.Error != "" {
			return fmt.Errorf("%s", e.Error)
		}
		return fmt.Errorf("admin API: %s", resp.Status)
	}
	if err := json.Unmarshal(b, out); err != nil {
		return err
	}
	if w := resp.Header.Get(warningHeader); w != "" {
		return &Warning{Msg: w}
	}
	return nil
}

// warningHeader carries what went wrong with a change that took effect.
const warningHeader = "Interlock-Warning"

// Warning is the error of a change that took effect with a fault (the
// ticket is in force but the ticket file could not be saved): the answer
// holds the ticket.
type Warning struct{ Msg string }

func (w *Warning) Error() string { return w.Msg }
