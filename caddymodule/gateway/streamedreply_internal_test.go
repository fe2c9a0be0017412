package gateway

import (
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"

	"github.com/mcpgate/mcpgate/caddymodule/replyfilter"
)

// TestStreamedReplyBounded: the reply to an approved call written into the
// client's open event stream holds only a JSON reply, and only up to
// replyfilter.DefaultMaxBodySize; a reply of another type, however long,
// is not held, and the client gets an error for the call either way.
func TestStreamedReplyBounded(t *testing.T) {
	chunk := []byte(strings.Repeat("x", 1<<20))
	tests := []struct {
		name        string
		contentType string
		chunks      int
		body        string // written after the chunks
		want        string
	}{
		{"a JSON reply", "application/json", 0, `{"jsonrpc":"2.0","id":1,"result":{}}`, `data: {"jsonrpc":"2.0","id":1,"result":{}}`},
		{"an endless text reply", "text/plain", 64, "", "the upstream answered the approved call with HTTP 200"},
		{"a JSON reply past the bound", "application/json", replyfilter.DefaultMaxBodySize>>20 + 1, "", "larger than 16777216 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			reply := &streamedReply{w: rec, header: make(http.Header), id: []byte("1")}
			reply.Header().Set("Content-Type", tt.contentType)
			reply.WriteHeader(http.StatusOK)
			var before runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			for range tt.chunks {
				if _, err := reply.Write(chunk); err != nil {
					t.Fatal(err)
				}
			}
			var after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&after)
			if _, err := reply.Write([]byte(tt.body)); err != nil {
				t.Fatal(err)
			}
			if held := reply.body.Len(); held > replyfilter.DefaultMaxBodySize {
				t.Errorf("%d bytes held", held)
			}
			if grown := int64(after.HeapAlloc) - int64(before.HeapAlloc); grown > 2*replyfilter.DefaultMaxBodySize {
				t.Errorf("the heap grew by %d bytes", grown)
			}
			reply.finish()
			if got := rec.Body.String(); !strings.Contains(got, tt.want) || len(got) > 1024 {
				t.Errorf("the client got %.300q; want %q", got, tt.want)
			}
		})
	}
}
