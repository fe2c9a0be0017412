package replyfilter_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"

	"github.com/mcpgate/mcpgate/caddymodule/mcpmsg"
	"github.com/mcpgate/mcpgate/caddymodule/replyfilter"
)

func ExampleWrap() {
	// The upstream answers a tools/list request (id 1) on an event stream,
	// after a notification.
	upstream := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, "data: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/tools/list_changed\"}\r\r")
		io.WriteString(w, "event: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"tools\":[{\"name\":\"delete_issue\"}]}}\n\n")
	})

	rec := httptest.NewRecorder()
	w, finish := replyfilter.Wrap(rec, replyfilter.Hooks{
		WatchIDs: [][]byte{[]byte(`1`)},
		RewriteResult: func(_, _ []byte) ([]byte, error) {
			return []byte(`{"tools":[]}`), nil // hide every tool
		},
		OnMessage: func(m *mcpmsg.Message) {
			fmt.Printf("seen: %s %s%s\n", m.Kind, m.Method, m.ID)
		},
	})
	upstream.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/mcp", nil))
	if err := finish(); err != nil {
		fmt.Println(err)
	}
	fmt.Print(rec.Body.String())
	// Output:
	// seen: notification notifications/tools/list_changed
	// seen: response 1
	// data: {"jsonrpc":"2.0","method":"notifications/tools/list_changed"}
	//
	// event: message
	// data: {"jsonrpc":"2.0","id":1,"result":{"tools":[]}}
}
