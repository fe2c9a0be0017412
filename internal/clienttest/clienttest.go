// Package clienttest makes requests as MCP clients send them, for tests
// that talk to the gateway (or an MCP server) without an SDK.
package clienttest

import (
	"io"
	"net/http"
	"testing"
)

// NewRequest builds a request as an MCP client sends it: JSON, accepting
// JSON or an event stream. header replaces those headers and adds others;
// an empty value removes one.
func NewRequest(tb testing.TB, method, url string, header http.Header, body io.Reader) *http.Request {
	tb.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		tb.Fatalf("building %s %s: %v", method, url, err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	for name, values := range header {
		req.Header.Del(name)
		for _, v := range values {
			if v != "" {
				req.Header.Add(name, v)
			}
		}
	}
	return req
}

// Post sends one raw POST of body with header (see NewRequest) and returns
// the status and the whole body of the reply.
func Post(tb testing.TB, url string, header http.Header, body io.Reader) (int, []byte) {
	tb.Helper()
	resp, err := http.DefaultClient.Do(NewRequest(tb, http.MethodPost, url, header, body))
	if err != nil {
		tb.Fatalf("POST %s: %v", url, err)
	}
	defer resp.Body.Close()
	got, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatalf("reading the reply to POST %s: %v", url, err)
	}
	return resp.StatusCode, got
}
