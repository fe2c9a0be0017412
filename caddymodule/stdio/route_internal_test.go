package stdio

import (
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"go.uber.org/zap"
)

// TestBacklogBounded: what a server sends while its client has no stream
// open is kept up to maxBacklog messages and maxBacklogBytes bytes, the
// oldest dropped first (the requests among them handed back, to be
// refused); one message larger than the bound is kept alone.
func TestBacklogBounded(t *testing.T) {
	s := &session{}
	big := make([]byte, 1<<20)
	var dropped []*jsonrpc.Request
	for i := range 16 {
		request := &jsonrpc.Request{Method: "notifications/message"}
		if i%2 == 0 {
			id, err := jsonrpc.MakeID(fmt.Sprint(i))
			if err != nil {
				t.Fatal(err)
			}
			request = &jsonrpc.Request{ID: id, Method: "ping"}
		}
		_, d := s.targetLocked(request, "", big)
		dropped = append(dropped, d...)
		if s.backlogBytes > maxBacklogBytes || len(s.backlog) > maxBacklog {
			t.Fatalf("after %d messages of 1 MiB the backlog holds %d messages, %d bytes; want at most %d, %d", i+1, len(s.backlog), s.backlogBytes, maxBacklog, maxBacklogBytes)
		}
	}
	if len(s.backlog) != maxBacklogBytes>>20 || len(dropped) != (16-len(s.backlog))/2 {
		t.Errorf("backlog %d messages, %d requests dropped; want the newest %d kept and the requests of the others dropped", len(s.backlog), len(dropped), maxBacklogBytes>>20)
	}
	huge := make([]byte, 2*maxBacklogBytes)
	s.targetLocked(&jsonrpc.Request{Method: "notifications/message"}, "", huge)
	if len(s.backlog) != 1 || s.backlogBytes != len(huge) {
		t.Errorf("after one message larger than the bound: %d messages, %d bytes; want it kept alone", len(s.backlog), s.backlogBytes)
	}
	if taken := s.takeBacklogLocked(); len(taken) != 1 || s.backlogBytes != 0 || s.backlog != nil {
		t.Errorf("taking the backlog left %d messages, %d bytes", len(s.backlog), s.backlogBytes)
	}
}

// TestReadFailureMidMessage: a server whose stdout ends in the middle of
// a message ended because it exited: the reason says so, with its exit
// and last stderr line, as at the end of a whole message.
func TestReadFailureMidMessage(t *testing.T) {
	exited := make(chan struct{})
	close(exited)
	s := &session{srv: &Server{cfg: Config{StopGrace: time.Second}}, proc: &process{exited: exited, exitErr: fmt.Errorf("exit status 5"), lastWords: "dying mid-message"}}
	for err, want := range map[error]string{
		io.EOF:              "the MCP server exited (exit status 5); its last stderr line: dying mid-message",
		io.ErrUnexpectedEOF: "the MCP server exited (exit status 5); its last stderr line: dying mid-message, in the middle of a message",
		fmt.Errorf("decoding: %w", io.ErrUnexpectedEOF): "in the middle of a message",
	} {
		if got := s.readFailure(err).message; !strings.Contains(got, want) {
			t.Errorf("readFailure(%v) = %q, want it to hold %q", err, got, want)
		}
	}
	if got := s.readFailure(fmt.Errorf("message too large")).message; !strings.HasPrefix(got, "reading from the MCP server: ") {
		t.Errorf("readFailure of another error = %q", got)
	}
}

// TestExitReasonQuotesTheError: a crashed server's exit is explained by
// the last line of its stderr that reads as an error, where runtimes end
// their reports with lines that do not say why (Node.js's version, a
// stack, blank lines), and by its last line otherwise.
func TestExitReasonQuotesTheError(t *testing.T) {
	tests := []struct {
		name, stderr, want string
	}{
		{"node", "node:internal/modules/cjs/loader:1228\n  throw err;\n  ^\n\nError: Cannot find module '/srv/server.js'\n    at Module._resolveFilename (node:internal/modules/cjs/loader:1225:15)\n  code: 'MODULE_NOT_FOUND',\n  requireStack: []\n}\n\nNode.js v20.20.2\n",
			"its last stderr line reading as an error: Error: Cannot find module '/srv/server.js'; its last: Node.js v20.20.2"},
		{"python", "Traceback (most recent call last):\n  File \"server.py\", line 1, in <module>\n    import mcp\nModuleNotFoundError: No module named 'mcp'\n",
			"its last stderr line: ModuleNotFoundError: No module named 'mcp'"},
		{"go", "panic: no token\n\ngoroutine 1 [running]:\nmain.main()\n\t/src/main.go:9 +0x1d\nexit status 2\n",
			"its last stderr line reading as an error: panic: no token; its last: exit status 2"},
		{"a plain last line", "starting\nGITHUB_TOKEN is not set\n", "its last stderr line: GITHUB_TOKEN is not set"},
		{"blank lines last", "bad config\n\n   \n", "its last stderr line: bad config"},
		{"nothing", "", "the MCP server exited (exit status 1)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			exited := make(chan struct{})
			close(exited)
			p := &process{exited: exited, exitErr: fmt.Errorf("exit status 1"), logger: zap.NewNop()}
			p.logStderr(strings.NewReader(tt.stderr))
			if got := p.exitReason(true); !strings.HasSuffix(got, tt.want) {
				t.Errorf("exitReason = %q; want it to end with %q", got, tt.want)
			}
			if got := p.exitReason(false); got != "the MCP server exited (exit status 1)" {
				t.Errorf("exitReason(false) = %q; want stderr unquoted", got)
			}
		})
	}
}

// TestProgressOnAForgottenTokenGoesNowhere: progress on a token the
// gateway gave a request whose reply is gone (its POST left, or failing
// to take it) is dropped, never carried by another reply, the GET stream
// or the backlog (it went to the newest asking POST's: found by a
// review); progress on a token of the server's own goes where anything it
// says unasked goes.
func TestProgressOnAForgottenTokenGoesNowhere(t *testing.T) {
	other := &reply{}
	s := &session{progress: map[string]*reply{}, posts: []*reply{other}}
	progress := &jsonrpc.Request{Method: "notifications/progress"}
	if target, _ := s.targetLocked(progress, `"`+gatewayTokenPrefix+`forgotten"`, []byte("{}")); target != nil || len(s.backlog) != 0 {
		t.Errorf("progress on a forgotten gateway token went to %p (backlog %d); want no one", target, len(s.backlog))
	}
	if target, _ := s.targetLocked(progress, `"the-server's-own"`, []byte("{}")); target != other {
		t.Errorf("progress on a token of the server's own went to %p; want the newest asking POST's reply, %p", target, other)
	}
}
