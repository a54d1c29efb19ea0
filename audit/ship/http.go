package ship

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
	"unicode"
)

// HTTPOptions configure an HTTP sink.
type HTTPOptions struct {
	URL string // http:// or https://
	// TokenFile holds a token sent as "Authorization: <AuthScheme> <token>";
	// it is read again after a 401 or 403, so a rotated token is picked up.
	TokenFile  string
	AuthScheme string      // default "Bearer"; "Splunk" for Splunk HEC
	TLS        *tls.Config // for https: roots, client certificate; nil: the system's roots
	Timeout    time.Duration
	Version    string // the gateway's version, for User-Agent
}

// HTTP POSTs each batch as JSON lines (application/x-ndjson), the record
// lines as written, one per line. A 2xx answer acknowledges the batch.
// 408, 429 and 5xx, network errors, redirects and the answers that mean a
// wrong URL or credentials (401, 403, 404, 405, 407) are retried with
// back-off; any other 4xx refuses the records themselves (*RejectError).
type HTTP struct {
	opts   HTTPOptions
	client *http.Client
	token  string
	size   int // of the last body, to size the next
}

var _ Sink = (*HTTP)(nil)

// NewHTTP checks the options, reads the token, and makes a sink.
func NewHTTP(o HTTPOptions) (*HTTP, error) {
	u, err := url.Parse(o.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("ship: url %q is not an http:// or https:// URL with a host", o.URL)
	}
	if o.AuthScheme == "" {
		o.AuthScheme = "Bearer"
	}
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
	h := &HTTP{opts: o}
	if o.TokenFile != "" {
		if h.token, err = readToken(o.TokenFile); err != nil {
			return nil, err
		}
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = o.TLS
	tr.MaxIdleConnsPerHost = 1
	tr.ResponseHeaderTimeout = o.Timeout
	h.client = &http.Client{
		Transport: tr,
		Timeout:   o.Timeout,
		// A redirect of a POST would resend the token elsewhere: report it instead.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return h, nil
}

func readToken(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("ship: token_file: %w", err)
	}
	t := strings.TrimSpace(string(b))
	if t == "" || strings.ContainsAny(t, "\r\n") {
		return "", fmt.Errorf("ship: token_file %s: want one line holding the token", path)
	}
	return t, nil
}

// StatusError is an answer that is worth retrying later.
type StatusError struct {
	Status int
	Detail string
	After  time.Duration // from Retry-After, 0 when absent
	Hint   string
}

func (e *StatusError) Error() string {
	s := fmt.Sprintf("status %d", e.Status)
	if e.Hint != "" {
		s += " (" + e.Hint + ")"
	}
	if e.Detail != "" {
		s += ": " + e.Detail
	}
	return s
}

// RetryAfter is the receiver's Retry-After.
func (e *StatusError) RetryAfter() time.Duration { return e.After }

// Send POSTs the batch and reads the answer.
func (h *HTTP) Send(ctx context.Context, recs []Record) error {
	// A body of its own for every request: the transport may still be
	// sending the last one after its answer came (a receiver can answer
	// before it read the request).
	body := make([]byte, 0, h.size+h.size/4)
	for i := range recs {
		body = append(body, recs[i].Line...)
		body = append(body, '\n')
	}
	h.size = len(body)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.opts.URL, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/x-ndjson")
	req.Header.Set("User-Agent", "interlock/"+h.opts.Version)
	if h.token != "" {
		req.Header.Set("Authorization", h.opts.AuthScheme+" "+h.token)
	}
	resp, err := h.client.Do(req)
	if err != nil {
		return fmt.Errorf("http %s: %w", redact(h.opts.URL), unwrapURLError(err))
	}
	detail := readDetail(resp.Body)
	resp.Body.Close()
	st := resp.StatusCode
	switch {
	case st >= 200 && st < 300:
		return nil
	case st == http.StatusTooManyRequests || st == http.StatusRequestTimeout || st >= 500:
		return &StatusError{Status: st, Detail: detail, After: retryAfter(resp.Header.Get("Retry-After"))}
	case st == http.StatusUnauthorized || st == http.StatusForbidden:
		if h.opts.TokenFile != "" {
			if t, err := readToken(h.opts.TokenFile); err == nil {
				h.token = t
			}
		}
		return &StatusError{Status: st, Detail: detail, Hint: "check token_file and auth_scheme"}
	case st == http.StatusNotFound || st == http.StatusMethodNotAllowed || st == http.StatusProxyAuthRequired:
		return &StatusError{Status: st, Detail: detail, Hint: "check url"}
	case st >= 300 && st < 400:
		return &StatusError{Status: st, Detail: "redirect to " + redact(resp.Header.Get("Location")), Hint: "set url to where it redirects"}
	case st >= 400:
		return &RejectError{Status: st, Detail: detail}
	}
	return &StatusError{Status: st, Detail: detail}
}

// Close drops idle connections.
func (h *HTTP) Close(context.Context) error {
	h.client.CloseIdleConnections()
	return nil
}

// readDetail reads the start of an answer's body as one line of text, and
// drains a little more so that the connection can be reused.
func readDetail(r io.Reader) string {
	b, _ := io.ReadAll(io.LimitReader(r, 512))
	_, _ = io.Copy(io.Discard, io.LimitReader(r, 64<<10))
	s := strings.Map(func(c rune) rune {
		if unicode.IsControl(c) {
			return ' '
		}
		return c
	}, string(b))
	return strings.TrimSpace(s)
}

func retryAfter(v string) time.Duration {
	if v == "" {
		return 0
	}
	if n, err := strconv.Atoi(v); err == nil && n >= 0 {
		return time.Duration(n) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(0, time.Until(t))
	}
	return 0
}

// redact drops credentials and the query (HEC channels, tokens) from a URL
// for logs.
func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	u.User, u.RawQuery = nil, ""
	return u.String()
}

// unwrapURLError drops *url.Error's repetition of the method and URL.
func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		var ne net.Error
		if errors.As(ue.Err, &ne) && ne.Timeout() {
			return fmt.Errorf("timeout: %w", ue.Err)
		}
		return ue.Err
	}
	return err
}
