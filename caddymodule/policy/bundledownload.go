package policy

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/open-policy-agent/opa/v1/plugins/rest"
)

// downloadsPluginName names bundleDownloads in OPA's configuration, as the
// credentials plugin of the bundle's service.
const downloadsPluginName = "mcpgate_bundle_downloads"

// bundleDownloads gives OPA's bundle plugin the HTTP client it downloads
// with, in the place of a credentials plugin (OPA's REST client takes its
// HTTP client from one). OPA bounds only the wait for a response's
// headers and reads a bundle whole, and each of its files up to 1 GiB: a
// server that stalls in the middle of a body would stop the polling for
// good (each download waits for the last), and a small archive that
// decompresses to gigabytes would take them in memory. So each download
// is bounded in time (the client's Timeout covers reading the body), and
// the bundle in size, compressed and uncompressed, before OPA reads it.
// It sends the bearer token as OPA's bearer credentials do.
type bundleDownloads struct {
	token   string
	timeout time.Duration
	maxSize int64
}

// NewClient returns the HTTP client of the bundle's service: OPA's
// default (its TLS settings and response header timeout), bounded.
func (d *bundleDownloads) NewClient(c rest.Config) (*http.Client, error) {
	tlsConfig, err := rest.DefaultTLSConfig(c)
	if err != nil {
		return nil, fmt.Errorf("policy bundle service: %w", err)
	}
	var headerTimeout int64
	if c.ResponseHeaderTimeoutSeconds != nil {
		headerTimeout = *c.ResponseHeaderTimeoutSeconds
	}
	client := rest.DefaultRoundTripperClient(tlsConfig, headerTimeout)
	client.Timeout = d.timeout
	client.Transport = &boundedBundles{base: client.Transport, maxSize: d.maxSize, timeout: d.timeout}
	return client, nil
}

// Prepare adds the bearer token, if any, to a request to the service
// (not to one following a redirect, as OPA's bearer credentials do not).
func (d *bundleDownloads) Prepare(r *http.Request) error {
	if d.token == "" {
		return nil
	}
	if r.Response != nil && (r.Response.StatusCode == http.StatusPermanentRedirect || r.Response.StatusCode == http.StatusTemporaryRedirect) {
		return nil
	}
	r.Header.Set("Authorization", "Bearer "+d.token)
	return nil
}

// Start, Stop and Reconfigure make bundleDownloads one of the plugins of
// OPA's plugin manager, where credentials plugins are looked up; it has
// nothing to start.
func (d *bundleDownloads) Start(context.Context) error      { return nil }
func (d *bundleDownloads) Stop(context.Context)             {}
func (d *bundleDownloads) Reconfigure(context.Context, any) {}

// boundedBundles reads a bundle's response whole before OPA does, and
// refuses one larger than maxSize, compressed or once decompressed. (The
// client's timeout, which it names in its errors, ends the reading.)
type boundedBundles struct {
	base    http.RoundTripper
	maxSize int64
	timeout time.Duration
}

// errBundleTooLarge is the error of a bundle past its size bound.
var errBundleTooLarge = errors.New("policy bundle too large")

// RoundTrip makes the request, and reads a 200 response's bundle (other
// responses, a 304 say, hold none for OPA to read).
func (t *boundedBundles) RoundTrip(r *http.Request) (*http.Response, error) {
	start := time.Now()
	resp, err := t.base.RoundTrip(r)
	if err != nil || resp.StatusCode != http.StatusOK {
		return resp, err
	}
	body, err := readBundle(resp.Body, t.maxSize)
	_ = resp.Body.Close()
	if err != nil && t.timeout > 0 && time.Since(start) >= t.timeout {
		// (The client's error says "awaiting headers" of any timeout.)
		return nil, fmt.Errorf("the download took longer than its download_timeout (%s): %w", t.timeout, err)
	}
	if err != nil {
		return nil, err
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	resp.ContentLength = int64(len(body))
	resp.Header.Set("Content-Length", strconv.Itoa(len(body)))
	return resp, nil
}

// readBundle reads a bundle's bytes, at most maxSize of them, and checks
// that a gzip archive (as bundles are) decompresses to at most maxSize
// bytes too, without keeping what it decompresses. Another body is
// returned as it is, for OPA to refuse.
func readBundle(body io.Reader, maxSize int64) ([]byte, error) {
	raw, err := io.ReadAll(io.LimitReader(body, maxSize+1))
	if err != nil {
		return nil, fmt.Errorf("reading policy bundle: %w", err)
	}
	if int64(len(raw)) > maxSize {
		return nil, fmt.Errorf("%w: more than %d bytes (max_size)", errBundleTooLarge, maxSize)
	}
	if len(raw) < 2 || raw[0] != 0x1f || raw[1] != 0x8b {
		return raw, nil
	}
	archive, err := gzip.NewReader(bytes.NewReader(raw))
	if err != nil {
		return raw, nil // OPA refuses it, saying why
	}
	n, err := io.Copy(io.Discard, io.LimitReader(archive, maxSize+1))
	switch {
	case n > maxSize:
		return nil, fmt.Errorf("%w: it decompresses to more than %d bytes (max_size)", errBundleTooLarge, maxSize)
	case err != nil:
		return raw, nil // OPA refuses it, saying why
	}
	return raw, nil
}
