//lint:file-ignore SA1019 sampling and roots are deprecated (SEP-2577) but stdio servers still use them, and they must get through.

package stdiomodule_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/modelcontextprotocol/go-sdk/mcp"
	"golang.org/x/crypto/bcrypt"

	"github.com/mcpgate/mcpgate/internal/caddytest"
	"github.com/mcpgate/mcpgate/internal/clienttest"
	"github.com/mcpgate/mcpgate/internal/stdiotest"
	"github.com/mcpgate/mcpgate/internal/testport"
	"github.com/mcpgate/mcpgate/internal/testwait"
)

// TestPolicyInFront checks that mcp_policy decides the calls to a stdio
// server by its permissions table, as it does for any upstream: read-only
// tools run, a write tool needs approval (and, with no approval
// configured, is refused), a destructive one is blocked and hidden.
func TestPolicyInFront(t *testing.T) {
	session := stdiotest.Connect(t, startGateway(t, stdiotest.ModeServe), nil)
	tests := []struct {
		tool    string
		want    string
		isError bool
	}{
		{"echo", "echo:hi", false},
		{"write_note", "needs approval", true},
		{"delete_all", "Blocked by policy", true},
	}
	for _, tt := range tests {
		t.Run(tt.tool, func(t *testing.T) {
			text, isError := stdiotest.Call(t, session, tt.tool, map[string]any{"text": "hi"})
			if isError != tt.isError || !strings.Contains(text, tt.want) {
				t.Errorf("%s answered %q (isError %v), want %q (isError %v)", tt.tool, text, isError, tt.want, tt.isError)
			}
		})
	}
	names := stdiotest.ToolNames(t, session)
	if !slices.Contains(names, "echo") || slices.Contains(names, "delete_all") {
		t.Errorf("tools/list gave %q, want echo and not the blocked delete_all", names)
	}
}

// TestServerToClient checks that what the server asks of the client
// (elicitation, sampling) and tells it (progress) gets through mcp_policy
// and mcp_stdio, and that a client's cancellation reaches the server.
func TestServerToClient(t *testing.T) {
	progress := make(chan *mcp.ProgressNotificationParams, 16)
	session := stdiotest.Connect(t, startGateway(t, stdiotest.ModeServe), &mcp.ClientOptions{
		ElicitationHandler: func(context.Context, *mcp.ElicitRequest) (*mcp.ElicitResult, error) {
			return &mcp.ElicitResult{Action: "accept", Content: map[string]any{"colour": "green"}}, nil
		},
		CreateMessageHandler: func(_ context.Context, req *mcp.CreateMessageRequest) (*mcp.CreateMessageResult, error) {
			return &mcp.CreateMessageResult{Model: "test", Role: "assistant", Content: &mcp.TextContent{Text: "42"}}, nil
		},
		ProgressNotificationHandler: func(_ context.Context, req *mcp.ProgressNotificationClientRequest) {
			progress <- req.Params
		},
	})

	t.Run("elicitation", func(t *testing.T) {
		if text, _ := stdiotest.Call(t, session, "ask", nil); text != "colour:green" {
			t.Errorf("ask answered %q, want colour:green", text)
		}
	})
	t.Run("sampling", func(t *testing.T) {
		if text, _ := stdiotest.Call(t, session, "sample", map[string]any{"text": "six times seven?"}); text != "sampled:42" {
			t.Errorf("sample answered %q, want sampled:42", text)
		}
	})
	t.Run("progress", func(t *testing.T) {
		res, err := session.CallTool(t.Context(), &mcp.CallToolParams{
			Name:      "progress",
			Arguments: map[string]any{"steps": 3},
			Meta:      mcp.Meta{"progressToken": "p1"},
		})
		if err != nil || stdiotest.ResultText(res) != "done" {
			t.Fatalf("progress answered %v, %v; want done", res, err)
		}
		for step := 1; step <= 3; step++ {
			select {
			case p := <-progress:
				if p.ProgressToken != "p1" || p.Progress != float64(step) {
					t.Errorf("progress notification %d is %+v, want token p1, progress %d", step, p, step)
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("got %d of 3 progress notifications", step-1)
			}
		}
	})
	t.Run("cancellation", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		done := make(chan error, 1)
		go func() {
			_, err := session.CallTool(ctx, &mcp.CallToolParams{Name: "block", Meta: mcp.Meta{"progressToken": "c1"}})
			done <- err
		}()
		select {
		case <-progress: // the call is running on the server
		case <-time.After(10 * time.Second):
			t.Fatal("the blocking call never started")
		}
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("the cancelled call returned %v, want context.Canceled", err)
		}
		stdiotest.WaitFor(t, "the server to see the cancellation", func() bool {
			text, _ := stdiotest.Call(t, session, "cancellations", nil)
			return text == "1"
		})
	})
}

// TestRequestBeforeAnyStream: a server that asks its client something as
// soon as the session is initialized (the filesystem server asks for
// roots) asks before the client has a stream open to hear it; the request
// waits, and goes out on the first stream the client opens.
func TestRequestBeforeAnyStream(t *testing.T) {
	url := startGateway(t, stdiotest.ModeServe)
	client := mcp.NewClient(&mcp.Implementation{Name: "test-client", Version: "1"}, nil)
	client.AddRoots(&mcp.Root{URI: "file:///data", Name: "data"})
	session, err := client.Connect(t.Context(), &mcp.StreamableClientTransport{Endpoint: url}, nil)
	if err != nil {
		t.Fatalf("connecting: %v", err)
	}
	defer session.Close()
	stdiotest.WaitFor(t, "the server to get the roots", func() bool {
		res, err := session.CallTool(t.Context(), &mcp.CallToolParams{Name: "roots"})
		return err == nil && !res.IsError && stdiotest.ResultText(res) == "file:///data"
	})
}

// TestRefusedServerRequest: a request from the server that the policy
// refuses is answered to the server by the gateway, and the client never
// sees it. The server asks as the session starts, before the client (with
// no GET stream) has a stream to hear it on; the request waits for the
// client's first tools/call, not for the tools/list that mcp_policy sends
// first on its own account (which would swallow it).
func TestRefusedServerRequest(t *testing.T) {
	t.Setenv("XDG_DATA_HOME", t.TempDir())
	port := testport.Free(t)
	caddyfile := strings.Replace(site(t, port, stdiotest.ModeServe), "server stdio", "server stdio\n\t\tpolicy ../../policies testdata/noroots", 1)
	caddytest.Start(t, caddytest.GlobalOptions(t)+caddyfile)
	caddytest.WaitForListener(t, port)
	url := fmt.Sprintf("http://127.0.0.1:%d/", port)

	resp := rawPost(t, url, "", `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{"roots":{}},"clientInfo":{"name":"curl","version":"1"}}}`)
	session := resp.Header.Get("Mcp-Session-Id")
	rawPost(t, url, session, `{"jsonrpc":"2.0","method":"notifications/initialized"}`)
	stdiotest.WaitFor(t, "the server to hear that its request was refused", func() bool {
		body := readAll(t, rawPost(t, url, session, `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"roots","arguments":{}}}`))
		if strings.Contains(body, `"roots/list"`) {
			t.Fatalf("the client was sent the refused request: %s", body)
		}
		return strings.Contains(body, "refused:") && strings.Contains(body, "servers may not ask for roots here")
	})
}

// TestGETStream opens a session by hand, then its GET stream, and checks
// that what the server sends outside any request (here, that its tool
// list changed) arrives there.
func TestGETStream(t *testing.T) {
	url := startGateway(t, stdiotest.ModeServe)
	resp := rawPost(t, url, "", initialize)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Mcp-Session-Id") == "" {
		t.Fatalf("initialize: %d %s, want 200 with a session id", resp.StatusCode, readAll(t, resp))
	}
	id := resp.Header.Get("Mcp-Session-Id")
	if resp := rawPost(t, url, id, `{"jsonrpc":"2.0","method":"notifications/initialized"}`); resp.StatusCode != http.StatusAccepted {
		t.Fatalf("notifications/initialized: %d, want 202", resp.StatusCode)
	}

	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("Mcp-Session-Id", id)
	req.Header.Set("MCP-Protocol-Version", "2025-06-18")
	stream, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("opening the GET stream: %v", err)
	}
	defer stream.Body.Close()
	if stream.StatusCode != http.StatusOK || !strings.HasPrefix(stream.Header.Get("Content-Type"), "text/event-stream") {
		t.Fatalf("GET: %d %s, want 200 with an event stream", stream.StatusCode, stream.Header.Get("Content-Type"))
	}

	grow := `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"grow","arguments":{"text":"grown"}}}`
	if resp := rawPost(t, url, id, grow); resp.StatusCode != http.StatusOK || !strings.Contains(readAll(t, resp), `"done"`) {
		t.Fatalf("calling grow: %d, want 200 with done", resp.StatusCode)
	}
	event := nextEvent(t, bufio.NewReader(stream.Body))
	if !strings.Contains(event, `"notifications/tools/list_changed"`) {
		t.Errorf("the GET stream carried %s, want notifications/tools/list_changed", event)
	}
}

// TestEnvironment checks that the server gets its configured variables
// (with placeholders replaced), PATH and HOME, and nothing else of the
// gateway's environment.
func TestEnvironment(t *testing.T) {
	t.Setenv("MCPGATE_TEST_SECRET", "do-not-leak")
	t.Setenv("MCPGATE_TEST_TOKEN", "t0ken")
	session := stdiotest.Connect(t, startGateway(t, stdiotest.ModeServe, "env TOKEN {env.MCPGATE_TEST_TOKEN}"), nil)
	text, _ := stdiotest.Call(t, session, "environ", nil)
	env := strings.Split(text, "\n")
	var names []string
	for _, pair := range env {
		name, _, _ := strings.Cut(pair, "=")
		names = append(names, name)
	}
	slices.Sort(names)
	if want := []string{"HOME", stdiotest.EnvMode, "PATH", "TOKEN"}; !slices.Equal(names, want) {
		t.Errorf("the server's environment has %q, want exactly %q", names, want)
	}
	if !slices.Contains(env, "TOKEN=t0ken") {
		t.Errorf("the server's environment %q lacks TOKEN=t0ken", env)
	}
}

// TestConcurrentSessions runs 50 sessions at once, each with a process of
// its own.
func TestConcurrentSessions(t *testing.T) {
	const sessions = 50
	url := startGateway(t, stdiotest.ModeServe, "max_sessions 60")
	var wg sync.WaitGroup
	errs := make(chan error, sessions)
	pids := make(chan int, sessions)
	for i := range sessions {
		wg.Go(func() {
			session, err := stdiotest.Dial(url, nil)
			if err != nil {
				errs <- fmt.Errorf("session %d: connecting: %w", i, err)
				return
			}
			defer session.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			want := fmt.Sprintf("echo:%d", i)
			for _, tool := range []string{"echo", "pid"} {
				res, err := session.CallTool(ctx, &mcp.CallToolParams{Name: tool, Arguments: map[string]any{"text": strconv.Itoa(i)}})
				switch {
				case err != nil:
					errs <- fmt.Errorf("session %d: calling %s: %w", i, tool, err)
					return
				case tool == "echo" && stdiotest.ResultText(res) != want:
					errs <- fmt.Errorf("session %d: echo answered %q, want %q", i, stdiotest.ResultText(res), want)
				case tool == "pid":
					pid, _ := strconv.Atoi(stdiotest.ResultText(res))
					pids <- pid
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	close(pids)
	for err := range errs {
		t.Error(err)
	}
	distinct := map[int]bool{}
	for pid := range pids {
		distinct[pid] = true
	}
	if len(distinct) != sessions {
		t.Errorf("%d sessions ran in %d processes, want one each", sessions, len(distinct))
	}
}

// TestCrashMidCall: a server that exits during a call ends its session;
// the client gets an error at once that says why, and the session is
// gone.
func TestCrashMidCall(t *testing.T) {
	url := startGateway(t, stdiotest.ModeServe)
	session := stdiotest.Connect(t, url, nil)
	pid := stdiotest.PID(t, session)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	_, err := session.CallTool(ctx, &mcp.CallToolParams{Name: "crash"})
	if err == nil || ctx.Err() != nil || !strings.Contains(err.Error(), "exit status 3") || !strings.Contains(err.Error(), "crashing on purpose") {
		t.Fatalf("the crashing call returned %v, want an error with the exit status and the server's last words", err)
	}
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("the crashed process %d is still there (%v): it was not reaped", pid, err)
	}
	later := rawPost(t, url, session.ID(), `{"jsonrpc":"2.0","id":9,"method":"tools/list"}`)
	if body := readAll(t, later); later.StatusCode != http.StatusNotFound || !strings.Contains(body, "exit status 3") {
		t.Errorf("a request in the crashed session: %d %s, want 404 with the reason it ended", later.StatusCode, body)
	}
}

// TestInitTimeout: a server that never answers initialize is killed after
// init_timeout, and the client is told so. (The timeout leaves the test
// binary, which the server is, time to start on a loaded machine or
// built with -race, and write its pid.)
func TestInitTimeout(t *testing.T) {
	pids := t.TempDir()
	url := startGateway(t, stdiotest.ModeSilent, "init_timeout 2s", fmt.Sprintf("env %s %q", stdiotest.EnvPIDDir, pids))
	resp := rawPost(t, url, "", initialize)
	body := readAll(t, resp)
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "did not answer initialize within 2s") || resp.Header.Get("Mcp-Session-Id") != "" {
		t.Errorf("initialize of a silent server: %d %s, want a JSON-RPC error and no session", resp.StatusCode, body)
	}
	var answer struct {
		ID    int `json:"id"`
		Error struct {
			Code int `json:"code"`
		} `json:"error"`
	}
	if err := json.Unmarshal([]byte(body), &answer); err != nil || answer.ID != 1 || answer.Error.Code != -32000 {
		t.Errorf("the answer %s is not a JSON-RPC error for id 1 (%v)", body, err)
	}
	files, err := os.ReadDir(pids)
	if err != nil || len(files) != 1 {
		t.Fatalf("the silent server wrote %d pid files (%v), want 1", len(files), err)
	}
	pid, _ := strconv.Atoi(files[0].Name())
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("the silent server %d is still there after the answer (%v), want it killed and reaped", pid, err)
	}
}

// TestMaxSessions: past max_sessions, initialize gets a 503 with
// Retry-After and a JSON-RPC error, at once.
func TestMaxSessions(t *testing.T) {
	url := startGateway(t, stdiotest.ModeServe, "max_sessions 2")
	stdiotest.Connect(t, url, nil)
	stdiotest.Connect(t, url, nil)
	resp := rawPost(t, url, "", initialize)
	body := readAll(t, resp)
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" ||
		!strings.Contains(body, `"id":1`) || !strings.Contains(body, "max_sessions") {
		t.Errorf("a third session: %d (Retry-After %q) %s, want 503 with Retry-After and a JSON-RPC error for id 1",
			resp.StatusCode, resp.Header.Get("Retry-After"), body)
	}
}

// TestMaxSessionsPerCaller: past max_sessions_per_caller, a caller's
// initialize gets the 503 of max_sessions, naming the caller's share,
// while another caller still starts a session; without an identity, a
// caller is the client's address (here behind a trusted proxy, read
// strictly).
func TestMaxSessionsPerCaller(t *testing.T) {
	url := startGatewayWith(t, "servers {\n\t\ttrusted_proxies static 127.0.0.1/32\n\t\ttrusted_proxies_strict\n\t}", "",
		stdiotest.ModeServe, "max_sessions 4", "max_sessions_per_caller 1")
	initializeFrom := func(address string) (int, string) {
		header := http.Header{"Mcp-Protocol-Version": {"2025-06-18"}, "X-Forwarded-For": {address}}
		resp, err := http.DefaultClient.Do(clienttest.NewRequest(t, http.MethodPost, url, header, strings.NewReader(initialize)))
		if err != nil {
			t.Fatalf("initialize from %s: %v", address, err)
		}
		defer resp.Body.Close()
		return resp.StatusCode, readAll(t, resp)
	}
	if status, body := initializeFrom("203.0.113.1"); status != http.StatusOK {
		t.Fatalf("a first session from 203.0.113.1: %d %s", status, body)
	}
	if status, body := initializeFrom("203.0.113.1"); status != http.StatusServiceUnavailable || !strings.Contains(body, "max_sessions_per_caller") {
		t.Errorf("a second session from 203.0.113.1: %d %s, want 503 naming max_sessions_per_caller", status, body)
	}
	if status, body := initializeFrom("203.0.113.2"); status != http.StatusOK {
		t.Errorf("a session from 203.0.113.2: %d %s, want it started", status, body)
	}
}

// TestMaxSessionsPerCallerInItsRealm: identical mcp_stdio blocks share
// one server, and its max_sessions_per_caller; behind handlers that
// identify callers from two realms (two basic_auth lists, named or not),
// "alice" of one is not "alice" of the other, and has a share of her own.
func TestMaxSessionsPerCallerInItsRealm(t *testing.T) {
	for _, named := range []bool{true, false} {
		t.Run(fmt.Sprintf("realms named: %t", named), func(t *testing.T) {
			maxSessionsPerCallerInItsRealm(t, named)
		})
	}
}

func maxSessionsPerCallerInItsRealm(t *testing.T, named bool) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("XDG_DATA_HOME", t.TempDir())
	site := func(port int, realm, password string) string {
		identity := fmt.Sprintf("identity caddy {\n\t\t\trealm %s\n\t\t}", realm)
		if !named {
			identity = "identity caddy"
		}
		hash, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		return fmt.Sprintf(`
:%d {
	bind 127.0.0.1
	basic_auth {
		alice %s
	}
	mcp_policy {
		server stdio-%s
		%s
		%s
	}
	mcp_stdio {
		command %q
		env %s %s
		max_sessions 4
		max_sessions_per_caller 1
	}
}
`, port, hash, realm, identity, permissions, self, stdiotest.EnvMode, stdiotest.ModeServe)
	}
	a, b := testport.Free(t), testport.Free(t)
	caddytest.Start(t, caddytest.GlobalOptions(t)+site(a, "tenant-a", "pw-a")+site(b, "tenant-b", "pw-b"))
	caddytest.WaitForListener(t, a)
	caddytest.WaitForListener(t, b)
	initializeAt := func(port int, password string) (int, string) {
		req := clienttest.NewRequest(t, http.MethodPost, fmt.Sprintf("http://127.0.0.1:%d/mcp", port),
			http.Header{"Mcp-Protocol-Version": {"2025-06-18"}}, strings.NewReader(initialize))
		req.SetBasicAuth("alice", password)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		return resp.StatusCode, readAll(t, resp)
	}
	if status, body := initializeAt(b, "pw-b"); status != http.StatusOK {
		t.Fatalf("tenant-b's alice's first session: %d %s", status, body)
	}
	if status, body := initializeAt(a, "pw-a"); status != http.StatusOK {
		t.Errorf("tenant-a's alice's first session: %d %s; want it started (tenant-b's alice is another caller)", status, body)
	}
	if status, body := initializeAt(a, "pw-a"); status != http.StatusServiceUnavailable || !strings.Contains(body, "max_sessions_per_caller") {
		t.Errorf("tenant-a's alice's second session: %d %s; want 503 naming max_sessions_per_caller", status, body)
	}
}

// TestUnknownSession: a request for a session that does not exist gets
// 404, the client's signal to initialize anew (here from mcp_policy,
// which opens only the session ids it sealed).
func TestUnknownSession(t *testing.T) {
	url := startGateway(t, stdiotest.ModeServe)
	resp := rawPost(t, url, "no-such-session", `{"jsonrpc":"2.0","id":7,"method":"tools/list"}`)
	if body := readAll(t, resp); resp.StatusCode != http.StatusNotFound || !strings.Contains(body, `"error"`) {
		t.Errorf("a request in an unknown session: %d %s, want 404 with a JSON-RPC error", resp.StatusCode, body)
	}
}

// TestReload: a reload that keeps the mcp_stdio block keeps its sessions
// and processes; one that changes it drains them.
func TestReload(t *testing.T) {
	t.Setenv("XDG_DATA_HOME", t.TempDir())
	port, other := testport.Free(t), testport.Free(t)
	global := caddytest.GlobalOptions(t)
	caddytest.Start(t, global+site(t, port, stdiotest.ModeServe))
	caddytest.WaitForListener(t, port)
	url := fmt.Sprintf("http://127.0.0.1:%d/mcp", port)
	// A reload closes the old server's idle connections: a client that
	// reused one would see it reset. Each request gets its own.
	session, err := mcp.NewClient(&mcp.Implementation{Name: "test-client", Version: "1"}, nil).Connect(t.Context(),
		&mcp.StreamableClientTransport{Endpoint: url, HTTPClient: &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}}, nil)
	if err != nil {
		t.Fatalf("connecting: %v", err)
	}
	defer session.Close()
	pid := stdiotest.PID(t, session)

	reload(t, global+site(t, port, stdiotest.ModeServe)+fmt.Sprintf(":%d {\n\tbind 127.0.0.1\n\trespond ok\n}\n", other))
	// A connection the old server accepted as it shut down is reset, on a
	// loaded machine: the first call after the reload may have to be made
	// again (never an answer from the wrong process).
	testwait.Until(t, 10*time.Second, func() string {
		_, err := session.CallTool(t.Context(), &mcp.CallToolParams{Name: "pid"})
		if err != nil {
			return fmt.Sprintf("calling pid after the reload: %v", err)
		}
		return ""
	})
	if got := stdiotest.PID(t, session); got != pid {
		t.Fatalf("after a reload that kept the block, the session runs in process %d, want %d", got, pid)
	}
	if text, _ := stdiotest.Call(t, session, "echo", map[string]any{"text": "still here"}); text != "echo:still here" {
		t.Errorf("after the reload, echo answered %q", text)
	}

	reload(t, global+site(t, port, stdiotest.ModeServe, "env CHANGED yes"))
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("after a reload that changed the block, process %d is still there (%v)", pid, err)
	}
	if _, err := session.CallTool(t.Context(), &mcp.CallToolParams{Name: "echo"}); err == nil {
		t.Error("the drained session still answers")
	}
	fresh := stdiotest.Connect(t, url, nil)
	if text, _ := stdiotest.Call(t, fresh, "environ", nil); !strings.Contains(text, "CHANGED=yes") {
		t.Errorf("a new session runs with the old configuration: %q", text)
	}
}

// TestNothingLeftAfterStop: when Caddy stops, every process it started is
// gone, and so are the processes those started.
func TestNothingLeftAfterStop(t *testing.T) {
	url := startGateway(t, stdiotest.ModeServe)
	var pids []int
	for range 3 {
		pids = append(pids, stdiotest.PID(t, stdiotest.Connect(t, url, nil)))
	}
	parent := stdiotest.Connect(t, url, nil)
	text, _ := stdiotest.Call(t, parent, "spawn", nil)
	grandchild, err := strconv.Atoi(text)
	if err != nil {
		t.Fatalf("spawn answered %q", text)
	}
	if stdiotest.Gone(grandchild) {
		t.Fatalf("the grandchild %d is not running", grandchild)
	}
	pids = append(pids, stdiotest.PID(t, parent))

	if err := caddy.Stop(); err != nil {
		t.Fatalf("stopping Caddy: %v", err)
	}
	for _, pid := range pids {
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("process %d is still there after Caddy stopped (%v)", pid, err)
		}
	}
	stdiotest.WaitFor(t, fmt.Sprintf("the grandchild %d to end", grandchild), func() bool { return stdiotest.Gone(grandchild) })
}

// TestExitEndsSessions: Caddy exiting on SIGTERM, with its default
// (eternal) grace period, ends the stdio sessions whose clients hold a
// stream open (the Go SDK's client keeps a GET stream open for the
// session), so that it exits and leaves no process behind, rather than
// waiting for the clients to leave.
func TestExitEndsSessions(t *testing.T) {
	port := testport.Free(t)
	gateway := runCaddy(t, caddytest.GlobalOptions(t)+site(t, port, stdiotest.ModeServe), port)
	session := stdiotest.Connect(t, fmt.Sprintf("http://127.0.0.1:%d/mcp", port), nil)
	pid := stdiotest.PID(t, session)
	if err := gateway.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- gateway.Wait() }()
	select {
	case <-exited:
	case <-time.After(30 * time.Second):
		t.Fatalf("Caddy still running 30 s after SIGTERM, with a client's session open")
	}
	stdiotest.WaitGone(t, pid)
}

// TestStateless serves a stateless client (MCP 2026-07-28): the go-sdk
// client discovers the server, then posts each request on its own, to a
// pooled process.
func TestStateless(t *testing.T) {
	url := startGateway(t, stdiotest.ModeServe, "stateless_pool 2")
	session := stdiotest.Connect(t, url, nil)
	if version := session.InitializeResult().ProtocolVersion; version != "2026-07-28" {
		t.Fatalf("the client negotiated %s, want the stateless 2026-07-28", version)
	}
	if name := session.InitializeResult().ServerInfo; name == nil || name.Name != "stdiotest" {
		t.Errorf("server/discover gave server info %+v, want the server's own", name)
	}
	if text, _ := stdiotest.Call(t, session, "echo", map[string]any{"text": "stateless"}); text != "echo:stateless" {
		t.Errorf("echo answered %q", text)
	}
	if text, isError := stdiotest.Call(t, session, "delete_all", nil); !isError || !strings.Contains(text, "Blocked by policy") {
		t.Errorf("delete_all answered %q (isError %v), want blocked", text, isError)
	}
	// The gateway initialized the server as a client without capabilities,
	// so the server does not even try to elicit; a request it sends
	// anyway is refused on the client's behalf.
	if text, isError := stdiotest.Call(t, session, "ask", nil); !isError || !strings.Contains(text, "does not support elicitation") {
		t.Errorf("ask answered %q (isError %v), want the server's refusal to elicit", text, isError)
	}
	// (With mcpgate's own code, which no SDK reads as a disconnect.)
	if text, isError := stdiotest.Call(t, session, "ping_client", nil); !isError || !strings.Contains(text, "stateless") || !strings.Contains(text, "code -31403") {
		t.Errorf("ping_client answered %q (isError %v), want an error of code -31403 saying a stateless client cannot be asked", text, isError)
	}
	first, second := stdiotest.PID(t, session), stdiotest.PID(t, session)
	if first != second {
		t.Errorf("two calls in a row ran in processes %d and %d, want the warm one reused", first, second)
	}
}

// TestLayoutStdioReachedAround: an mcp_stdio that runs the program one
// that mcp_policy guards runs (same command, arguments, environment and
// folder), reached without it (another port), runs the same server
// undecided, however it is tuned and however it spells the same program
// (a placeholder, a path through "." or a link, a name found in its
// PATH, the folder written out): the configuration does not start.
func TestLayoutStdioReachedAround(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	links := t.TempDir()
	if err := os.Symlink(self, filepath.Join(links, filepath.Base(self))); err != nil {
		t.Fatal(err)
	}
	cwd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("MCPGATE_TEST_PROGRAM", self)
	t.Setenv("MCPGATE_TEST_MODE", stdiotest.ModeServe)
	mode := fmt.Sprintf("\n\t\tenv %s %s", stdiotest.EnvMode, stdiotest.ModeServe)
	for name, spelling := range map[string]string{
		"as guarded":                     fmt.Sprintf("command %q%s", self, mode),
		"tuned":                          fmt.Sprintf("command %q%s\n\t\tidle_timeout 1m\n\t\tmax_sessions 3\n\t\tinit_timeout 5s", self, mode),
		"program from a placeholder":     "command {env.MCPGATE_TEST_PROGRAM}" + mode,
		"environment from a placeholder": fmt.Sprintf("command %q\n\t\tenv %s {env.MCPGATE_TEST_MODE}", self, stdiotest.EnvMode),
		"program through .":              fmt.Sprintf("command %q%s", filepath.Dir(self)+"/./"+filepath.Base(self), mode),
		"program through a link":         fmt.Sprintf("command %q%s", filepath.Join(links, filepath.Base(self)), mode),
		"program found in PATH":          fmt.Sprintf("command %q%s\n\t\tenv PATH %s", filepath.Base(self), mode, filepath.Dir(self)),
		"the gateway's folder written":   fmt.Sprintf("command %q%s\n\t\tdir %q", self, mode, cwd),
		"the gateway's PATH written":     fmt.Sprintf("command %q%s\n\t\tenv PATH {env.PATH}", self, mode),
	} {
		t.Run(name, func(t *testing.T) {
			t.Setenv("XDG_DATA_HOME", t.TempDir())
			guarded := site(t, testport.Free(t), stdiotest.ModeServe)
			if name == "program found in PATH" {
				guarded = site(t, testport.Free(t), stdiotest.ModeServe, "env PATH "+filepath.Dir(self))
			}
			around := fmt.Sprintf("\n:%d {\n\tbind 127.0.0.1\n\tmcp_stdio {\n\t\t%s\n\t}\n}\n", testport.Free(t), spelling)
			cfg, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(caddytest.GlobalOptions(t)+guarded+around), nil)
			if err != nil {
				t.Fatal(err)
			}
			err = caddy.Load(cfg, true)
			if err == nil {
				t.Cleanup(func() { _ = caddy.Stop() })
			}
			if err == nil || !strings.Contains(err.Error(), "the mcp_stdio is reached without mcp_policy") {
				t.Fatalf("loaded with %v; want it refused: the stdio server is reached without mcp_policy", err)
			}
		})
	}
}

// TestStdioTakesWhatPolicyLets: mcp_stdio reads a body as strictly as
// mcp_policy, but within the largest limits a configuration may set, so
// that it never refuses what mcp_policy in front let through (a call of
// 300,000 values, with max_values raised to a million).
func TestStdioTakesWhatPolicyLets(t *testing.T) {
	session := stdiotest.Connect(t, startPolicyGateway(t, "max_values 1000000", stdiotest.ModeServe), nil)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	res, err := session.CallTool(ctx, &mcp.CallToolParams{Name: "echo", Arguments: map[string]any{"text": "hi"}, Meta: mcp.Meta{"values": make([]int, 300_000)}})
	if err != nil || res.IsError {
		t.Errorf("a call of 300,000 values with max_values 1000000: %v, %v; want it run", res, err)
	}
}
