package policy

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"time"
)

// httpSource is an OPA bundle server: one URL answering GET with a bundle,
// polled with If-None-Match so an unchanged bundle costs a 304.
type httpSource struct {
	url     string
	client  *http.Client
	timeout time.Duration
	r       *bundleReader
	// etag is the ETag of the last bundle read, whether it was activated
	// or refused: the same bad bundle is not fetched and reported again
	// every poll. Guarded by Engine.mu.
	etag string
}

func newHTTPSource(opts Options) (*httpSource, error) {
	u, err := url.Parse(opts.Path)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("policy: %q is not a bundle server URL", opts.Path)
	}
	r, err := newBundleReader(opts.BundleOptions)
	if err != nil {
		return nil, err
	}
	if opts.BundleCAFile != "" && u.Scheme != "https" {
		return nil, fmt.Errorf("policy: a bundle CA file is configured but %s is not https", opts.Path)
	}
	tr, err := httpTransport(opts.BundleCAFile, "bundle CA")
	if err != nil {
		return nil, err
	}
	timeout := opts.BundleTimeout
	if timeout <= 0 {
		timeout = DefaultBundleTimeout
	}
	client := &http.Client{Transport: tr, Timeout: timeout,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) >= 5 {
				return errors.New("more than 5 redirects")
			}
			if via[0].URL.Scheme == "https" && req.URL.Scheme != "https" {
				return fmt.Errorf("redirected from https to %s", req.URL.Redacted())
			}
			return nil
		}}
	if u.Scheme == "http" && r.verify == nil {
		opts.Log.Warn().Str("path", opts.Path).
			Msg("policy bundles come over plain http with no bundle key: anyone on the network path can change the policy")
	}
	return &httpSource{url: opts.Path, client: client, timeout: timeout, r: r}, nil
}

func (h *httpSource) String() string { return h.url }

func (h *httpSource) read(ctx context.Context) (*snapshot, error) {
	start := time.Now()
	// timedOut: the request failed because bundle_timeout ran out (the
	// context's or the client's own), not because it was stopped.
	timedOut := func() bool { return time.Since(start) >= h.timeout }
	ctx, cancel := context.WithTimeout(ctx, h.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, h.url, nil)
	if err != nil {
		return nil, fmt.Errorf("bundle %s: %w", h.url, err)
	}
	if h.etag != "" {
		req.Header.Set("If-None-Match", h.etag)
	}
	req.Header.Set("User-Agent", "interlock")
	resp, err := h.client.Do(req)
	if err != nil {
		if timedOut() {
			return nil, fmt.Errorf("bundle %s: no answer within policy.bundle_timeout (%v)", h.url, h.timeout)
		}
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("bundle %s: %w", h.url, err)
	}
	defer resp.Body.Close()
	etag := resp.Header.Get("ETag")
	switch {
	case resp.StatusCode == http.StatusNotModified && h.etag != "":
		return nil, nil
	case resp.StatusCode != http.StatusOK:
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // lets the connection be reused
		return nil, fmt.Errorf("bundle %s: the server answered %s", h.url, resp.Status)
	case resp.ContentLength > h.r.max:
		h.etag = etag
		return nil, fmt.Errorf("bundle %s: %d bytes, more than the limit of %d", h.url, resp.ContentLength, h.r.max)
	}
	raw, err := io.ReadAll(io.LimitReader(resp.Body, h.r.max+1))
	if err != nil {
		if timedOut() {
			return nil, fmt.Errorf("bundle %s: reading the answer: not done within policy.bundle_timeout (%v)", h.url, h.timeout)
		}
		return nil, fmt.Errorf("bundle %s: reading the answer: %w", h.url, err)
	}
	h.etag = etag
	s, err := h.r.read(h.url, raw)
	if err != nil {
		return nil, err
	}
	s.bundle.etag = etag
	return s, nil
}

// httpTransport is an HTTP transport for TLS 1.2 or later that trusts the
// PEM roots in caFile, when set, instead of the system's; what names the
// setting in errors.
func httpTransport(caFile, what string) (*http.Transport, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile == "" {
		return tr, nil
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("policy: %s: %w", what, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("policy: %s %s: no PEM certificate in it", what, caFile)
	}
	tr.TLSClientConfig.RootCAs = pool
	return tr, nil
}
