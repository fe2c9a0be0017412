package replyfilter_test

import (
	"net/http"
	"strconv"
	"testing"

	"github.com/mcpgate/mcpgate/caddymodule/mcpmsg"
	"github.com/mcpgate/mcpgate/caddymodule/replyfilter"
)

// BenchmarkJSONToolResult measures what watching a plain JSON tool result
// costs, as the gateway watches the reply to an allowed tools/call: passed
// unread (PassJSON, nothing in it could be a request), and read as it is
// when it may ask for input (under 2026-07-28), against writing it to the
// client straight.
func BenchmarkJSONToolResult(b *testing.B) {
	reply := []byte(`{"jsonrpc":"2.0","id":42,"result":{"content":[{"type":"text","text":"echo:Summarise the open issues labelled p1 in the widgets repository, oldest first, with their owners and the date of their last activity"}]}}`)
	write := func(w http.ResponseWriter) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", strconv.Itoa(len(reply)))
		w.WriteHeader(http.StatusOK)
		if _, err := w.Write(reply); err != nil {
			b.Fatal(err)
		}
	}
	hooks := replyfilter.Hooks{
		WatchAll:      true,
		RewriteResult: func(_, result []byte) ([]byte, error) { return result, nil },
		OnMessage:     func(*mcpmsg.Message) {},
		Intercept:     func(*mcpmsg.Message) bool { return false },
	}
	for _, bc := range []struct {
		name  string
		watch func(http.ResponseWriter) (http.ResponseWriter, func() error)
	}{
		{"straight", func(w http.ResponseWriter) (http.ResponseWriter, func() error) { return w, func() error { return nil } }},
		{"passed", func(w http.ResponseWriter) (http.ResponseWriter, func() error) {
			passed := hooks
			passed.PassJSON = true
			return replyfilter.Wrap(w, passed)
		}},
		{"passed, its id checked", func(w http.ResponseWriter) (http.ResponseWriter, func() error) {
			passed := hooks
			passed.PassJSON = true
			passed.AnswersOf = func(id []byte) bool { return string(id) == "42" }
			return replyfilter.Wrap(w, passed)
		}},
		{"read", func(w http.ResponseWriter) (http.ResponseWriter, func() error) { return replyfilter.Wrap(w, hooks) }},
	} {
		b.Run(bc.name, func(b *testing.B) {
			client := &discard{header: http.Header{}}
			b.ReportAllocs()
			for b.Loop() {
				clear(client.header)
				w, finish := bc.watch(client)
				write(w)
				if err := finish(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// discard is a client that reads nothing.
type discard struct {
	header http.Header
}

func (d *discard) Header() http.Header { return d.header }

func (d *discard) WriteHeader(int) {}

func (d *discard) Write(p []byte) (int, error) { return len(p), nil }
