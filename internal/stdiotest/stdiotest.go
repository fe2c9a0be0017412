//lint:file-ignore SA1019 sampling and roots are deprecated (SEP-2577) but stdio servers still use them, and the tests check that they get through.

// Package stdiotest is a small MCP server that speaks over stdio, built
// on the go-sdk, for mcpgate's tests of stdio servers. A test binary
// runs itself as the server: its TestMain calls Main first, which serves
// instead of testing when the environment asks for it (EnvMode), so the
// tests need no build step.
package stdiotest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// Environment variables that the test binary reads when it starts.
const (
	// EnvMode makes the test binary an MCP stdio server; its value is one
	// of the modes below.
	EnvMode = "MCPGATE_STDIOTEST"
	// EnvPIDDir names a folder where a server that never answers writes
	// a file named after its pid, so that a test can find the process.
	EnvPIDDir = "MCPGATE_STDIOTEST_PIDS"
)

// What the test binary does as a server.
const (
	// ModeServe serves the tools below, and exits when stdin ends.
	ModeServe = "serve"
	// ModeStubborn serves, but ignores SIGTERM and the end of stdin: only
	// SIGKILL ends it.
	ModeStubborn = "stubborn"
	// ModeSilent never answers: it reads stdin to its end, then waits for
	// a signal.
	ModeSilent = "silent"
	// ModeSleep only waits for a signal: it is the grandchild that the
	// spawn tool starts.
	ModeSleep = "sleep"
	// ModeRepeat serves, but answers every request twice: it writes each
	// response again just before the next one, as a server whose answers
	// come twice, or late after a timeout, does.
	ModeRepeat = "repeat"
)

// Main serves as the environment asks, and exits, if EnvMode is set; it
// returns at once otherwise. Call it first in TestMain.
func Main() {
	mode := os.Getenv(EnvMode)
	if mode == "" {
		return
	}
	if err := run(mode); err != nil {
		fmt.Fprintln(os.Stderr, "stdiotest:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

func run(mode string) error {
	switch mode {
	case ModeServe:
		fmt.Fprintln(os.Stderr, "stdiotest ready")
		return Server().Run(context.Background(), &mcp.StdioTransport{})
	case ModeRepeat:
		return Server().Run(context.Background(), repeatTransport{&mcp.StdioTransport{}})
	case ModeStubborn:
		signal.Ignore(syscall.SIGTERM)
		err := Server().Run(context.Background(), &mcp.StdioTransport{})
		fmt.Fprintln(os.Stderr, "stdin ended; staying anyway:", err)
		waitForever()
	case ModeSilent:
		if dir := os.Getenv(EnvPIDDir); dir != "" {
			if err := os.WriteFile(filepath.Join(dir, strconv.Itoa(os.Getpid())), nil, 0o644); err != nil {
				return err
			}
		}
		_, _ = io.Copy(io.Discard, os.Stdin)
		waitForever()
	case ModeSleep:
		waitForever()
	}
	return fmt.Errorf("unknown mode %q", mode)
}

// repeatTransport is a transport whose connections write each response
// again before the next (ModeRepeat).
type repeatTransport struct{ mcp.Transport }

func (t repeatTransport) Connect(ctx context.Context) (mcp.Connection, error) {
	conn, err := t.Transport.Connect(ctx)
	if err != nil {
		return nil, err
	}
	return &repeatConn{Connection: conn}, nil
}

type repeatConn struct {
	mcp.Connection
	mu   sync.Mutex
	last *jsonrpc.Response
}

func (c *repeatConn) Write(ctx context.Context, msg jsonrpc.Message) error {
	response, ok := msg.(*jsonrpc.Response)
	if !ok {
		return c.Connection.Write(ctx, msg)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.last != nil {
		if err := c.Connection.Write(ctx, c.last); err != nil {
			return err
		}
	}
	c.last = response
	return c.Connection.Write(ctx, response)
}

// waitForever blocks until a signal ends the process.
func waitForever() {
	for {
		time.Sleep(time.Hour)
	}
}

// Input is every tool's input.
type Input struct {
	Text  string `json:"text,omitempty"`
	Steps int    `json:"steps,omitempty"`
}

// Server returns the test MCP server. Its tools, all read-only unless
// said otherwise:
//
//   - echo: answers "echo:<text>"
//   - environ: its environment, one variable a line
//   - pid: its process id
//   - spawn: starts a grandchild (ModeSleep) in its process group, and
//     answers its pid
//   - progress: sends <steps> progress notifications, then answers "done"
//   - block: sends one progress notification, then waits until the call
//     is cancelled; cancellations counts how many were
//   - ask: elicits a colour from the client, answers "colour:<colour>"
//   - sample: asks the client's model, answers "sampled:<text>"
//   - ping_client: pings the client, answers "pong"
//   - roots: the roots the client listed when asked, as soon as the
//     session was initialized (before the client could open a stream), or
//     "refused: " and why the request failed
//   - shout: writes <text> repeated <steps> times as one stderr line
//   - crash: exits with status 3 mid-call, saying so on stderr
//   - grow: adds a tool named <text>, so that the server tells its client
//     the tool list changed (on no request's stream)
//   - write_note (write) and delete_all (destructive): answer "done"
//   - linger: answers "lingering" at once, then, <steps>0 ms later,
//     reports progress on the call's token with the message
//     "late:<text>", as a server's work that outlives its answer does
//   - wait: reports progress once (when the call asks for it), then
//     answers "waited" after <steps>0 ms
//   - flood: reports progress <steps> times, each with a 64 KiB message,
//     then answers "flooded"
func Server() *mcp.Server {
	var roots atomic.Pointer[string]
	server := mcp.NewServer(&mcp.Implementation{Name: "stdiotest", Version: "1"}, &mcp.ServerOptions{
		InitializedHandler: func(_ context.Context, req *mcp.InitializedRequest) {
			if params := req.Session.InitializeParams(); params == nil || params.Capabilities == nil || params.Capabilities.RootsV2 == nil {
				return
			}
			// Not in the handler itself: the answer comes in through the
			// connection that is waiting for the handler to return.
			go func() {
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				defer cancel()
				listed, err := req.Session.ListRoots(ctx, nil)
				if err != nil {
					refused := "refused: " + err.Error()
					roots.Store(&refused)
					return
				}
				var uris []string
				for _, root := range listed.Roots {
					uris = append(uris, root.URI)
				}
				joined := strings.Join(uris, ",")
				roots.Store(&joined)
			}()
		},
	})
	var cancellations atomic.Int64
	readOnly := &mcp.ToolAnnotations{ReadOnlyHint: true}
	text := func(s string) *mcp.CallToolResult {
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: s}}}
	}
	tool := func(name string, annotations *mcp.ToolAnnotations, handle func(context.Context, *mcp.CallToolRequest, Input) (string, error)) {
		mcp.AddTool(server, &mcp.Tool{Name: name, Annotations: annotations}, func(ctx context.Context, req *mcp.CallToolRequest, in Input) (*mcp.CallToolResult, any, error) {
			answer, err := handle(ctx, req, in)
			if err != nil {
				return nil, nil, err
			}
			return text(answer), nil, nil
		})
	}
	tool("echo", readOnly, func(_ context.Context, _ *mcp.CallToolRequest, in Input) (string, error) {
		return "echo:" + in.Text, nil
	})
	tool("environ", readOnly, func(context.Context, *mcp.CallToolRequest, Input) (string, error) {
		return strings.Join(os.Environ(), "\n"), nil
	})
	tool("pid", readOnly, func(context.Context, *mcp.CallToolRequest, Input) (string, error) {
		return strconv.Itoa(os.Getpid()), nil
	})
	tool("spawn", readOnly, func(context.Context, *mcp.CallToolRequest, Input) (string, error) {
		self, err := os.Executable()
		if err != nil {
			return "", err
		}
		grandchild := exec.Command(self)
		grandchild.Env = []string{EnvMode + "=" + ModeSleep}
		if err := grandchild.Start(); err != nil {
			return "", err
		}
		return strconv.Itoa(grandchild.Process.Pid), nil
	})
	tool("progress", readOnly, func(ctx context.Context, req *mcp.CallToolRequest, in Input) (string, error) {
		for step := range in.Steps {
			if err := notifyProgress(ctx, req, step+1, in.Steps); err != nil {
				return "", err
			}
		}
		return "done", nil
	})
	tool("block", readOnly, func(ctx context.Context, req *mcp.CallToolRequest, _ Input) (string, error) {
		if err := notifyProgress(ctx, req, 1, 2); err != nil {
			return "", err
		}
		<-ctx.Done()
		cancellations.Add(1)
		return "", ctx.Err()
	})
	tool("cancellations", readOnly, func(context.Context, *mcp.CallToolRequest, Input) (string, error) {
		return strconv.FormatInt(cancellations.Load(), 10), nil
	})
	tool("ask", readOnly, func(ctx context.Context, req *mcp.CallToolRequest, _ Input) (string, error) {
		res, err := req.Session.Elicit(ctx, &mcp.ElicitParams{
			Message: "Which colour?",
			RequestedSchema: map[string]any{
				"type":       "object",
				"properties": map[string]any{"colour": map[string]any{"type": "string"}},
			},
		})
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("colour:%v", res.Content["colour"]), nil
	})
	tool("sample", readOnly, func(ctx context.Context, req *mcp.CallToolRequest, in Input) (string, error) {
		res, err := req.Session.CreateMessage(ctx, &mcp.CreateMessageParams{
			MaxTokens: 10,
			Messages:  []*mcp.SamplingMessage{{Role: "user", Content: &mcp.TextContent{Text: in.Text}}},
		})
		if err != nil {
			return "", err
		}
		sampled, ok := res.Content.(*mcp.TextContent)
		if !ok {
			return "", errors.New("the sample is not text")
		}
		return "sampled:" + sampled.Text, nil
	})
	tool("ping_client", readOnly, func(ctx context.Context, req *mcp.CallToolRequest, _ Input) (string, error) {
		if err := req.Session.Ping(ctx, nil); err != nil {
			if wire, ok := errors.AsType[*jsonrpc.Error](err); ok {
				return "", fmt.Errorf("code %d: %w", wire.Code, err)
			}
			return "", err
		}
		return "pong", nil
	})
	tool("roots", readOnly, func(context.Context, *mcp.CallToolRequest, Input) (string, error) {
		if listed := roots.Load(); listed != nil {
			return *listed, nil
		}
		return "", errors.New("no roots listed yet")
	})
	tool("shout", readOnly, func(_ context.Context, _ *mcp.CallToolRequest, in Input) (string, error) {
		fmt.Fprintln(os.Stderr, strings.Repeat(in.Text, in.Steps))
		return "done", nil
	})
	tool("crash", readOnly, func(context.Context, *mcp.CallToolRequest, Input) (string, error) {
		fmt.Fprintln(os.Stderr, "crashing on purpose")
		os.Exit(3)
		return "", nil
	})
	tool("grow", readOnly, func(_ context.Context, _ *mcp.CallToolRequest, in Input) (string, error) {
		mcp.AddTool(server, &mcp.Tool{Name: in.Text, Annotations: readOnly}, func(context.Context, *mcp.CallToolRequest, Input) (*mcp.CallToolResult, any, error) {
			return text("grown"), nil, nil
		})
		return "done", nil
	})
	tool("linger", readOnly, func(_ context.Context, req *mcp.CallToolRequest, in Input) (string, error) {
		if token := req.Params.GetProgressToken(); token != nil {
			go func() {
				time.Sleep(time.Duration(in.Steps) * 10 * time.Millisecond)
				_ = req.Session.NotifyProgress(context.Background(), &mcp.ProgressNotificationParams{ProgressToken: token, Progress: 1, Message: "late:" + in.Text})
			}()
		}
		return "lingering", nil
	})
	tool("flood", readOnly, func(ctx context.Context, req *mcp.CallToolRequest, in Input) (string, error) {
		blob := strings.Repeat("x", 64<<10)
		for step := range in.Steps {
			if err := req.Session.NotifyProgress(ctx, &mcp.ProgressNotificationParams{ProgressToken: req.Params.GetProgressToken(), Progress: float64(step + 1), Message: blob}); err != nil {
				return "", err
			}
		}
		return "flooded", nil
	})
	tool("wait", readOnly, func(ctx context.Context, req *mcp.CallToolRequest, in Input) (string, error) {
		if err := notifyProgress(ctx, req, 0, 1); err != nil {
			return "", err
		}
		select {
		case <-time.After(time.Duration(in.Steps) * 10 * time.Millisecond):
			return "waited", nil
		case <-ctx.Done():
			return "", ctx.Err()
		}
	})
	tool("write_note", &mcp.ToolAnnotations{DestructiveHint: new(false)}, func(context.Context, *mcp.CallToolRequest, Input) (string, error) {
		return "done", nil
	})
	tool("delete_all", &mcp.ToolAnnotations{DestructiveHint: new(true)}, func(context.Context, *mcp.CallToolRequest, Input) (string, error) {
		return "done", nil
	})
	return server
}

// notifyProgress reports step of steps on the call's progress token, if it
// has one.
func notifyProgress(ctx context.Context, req *mcp.CallToolRequest, step, steps int) error {
	token := req.Params.GetProgressToken()
	if token == nil {
		return nil
	}
	return req.Session.NotifyProgress(ctx, &mcp.ProgressNotificationParams{
		ProgressToken: token,
		Progress:      float64(step),
		Total:         float64(steps),
		Message:       fmt.Sprintf("step %d of %d", step, steps),
	})
}
