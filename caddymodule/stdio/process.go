package stdio

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"go.uber.org/zap"
	"golang.org/x/time/rate"
)

// Bounds on what the gateway keeps of a server's stderr.
const (
	// maxStderrLine is the longest stderr line logged whole; the rest of a
	// longer line is dropped, and the entry says so.
	maxStderrLine = 8 << 10
	// maxLastWords is how much of the last stderr line an error message
	// quotes.
	maxLastWords = 512
	// stderrDrain is how long a reaped process's stderr may stay open (held
	// by a process that left the group) before the gateway stops reading.
	stderrDrain = time.Second
	// stderrLinesPerSecond and stderrLinesBurst bound how many stderr
	// lines of one process are logged; the others are counted, and the
	// next line logged says how many were not.
	stderrLinesPerSecond = 100
	stderrLinesBurst     = 1000
)

// process is one running MCP server: the program, its process group, and
// the JSON-RPC connection over its stdin and stdout.
//
// The go-sdk's mcp.CommandTransport starts a program the same way, but it
// does not fit a gateway: its Close signals the program alone, so the
// programs a launcher starts (npx starts node) outlive SIGTERM and
// SIGKILL; and it reaps only in Close, so a program that exits by itself
// stays a zombie until then, and nothing notices. process keeps the
// go-sdk's framing (mcp.IOTransport over the pipes) and its shutdown
// order (close stdin, wait, SIGTERM, wait, SIGKILL), applied to the whole
// process group, and reaps as soon as the program exits.
type process struct {
	cmd    *exec.Cmd
	conn   mcp.Connection
	stdin  *os.File
	logger *zap.Logger

	// exited is closed once the program has been reaped, its group killed
	// and its stderr read; exitErr is Wait's answer.
	exited  chan struct{}
	exitErr error

	mu sync.Mutex
	// reaped is set, under mu, once the program is reaped: its process
	// group id may then name another group, and must not be signalled.
	reaped bool
	// lastWords is the last line the program wrote to stderr, but blank
	// ones; lastError the last of its lines that reads as an error (see
	// readsAsError).
	lastWords, lastError string
}

// startProcess starts the command in a process group of its own, with
// pipes for stdin, stdout and stderr, and connects to it. Lines longer
// than maxMessage on stdout end the connection; a write to stdin that
// takes longer than writeTimeout fails. Its stderr goes to logger, line
// by line.
func startProcess(c Command, maxMessage int, writeTimeout time.Duration, logger *zap.Logger) (*process, error) {
	path, err := c.lookPath()
	if err != nil {
		return nil, err
	}
	var pipes [3][2]*os.File // stdin, stdout, stderr: read end, write end
	closeAll := func() {
		for _, pipe := range pipes {
			for _, end := range pipe {
				if end != nil {
					end.Close()
				}
			}
		}
	}
	for i := range pipes {
		if pipes[i][0], pipes[i][1], err = os.Pipe(); err != nil {
			closeAll()
			return nil, fmt.Errorf("creating pipes for %s: %w", c.Path, err)
		}
	}
	cmd := exec.Command(path, c.Args...)
	cmd.Env = c.Env
	cmd.Dir = c.Dir
	cmd.SysProcAttr = groupAttr()
	cmd.Stdin, cmd.Stdout, cmd.Stderr = pipes[0][0], pipes[1][1], pipes[2][1]
	err = cmd.Start()
	// The child has its copies of these ends; the gateway's must close, or
	// the gateway would never read EOF from the child.
	for _, end := range []*os.File{pipes[0][0], pipes[1][1], pipes[2][1]} {
		end.Close()
	}
	if err != nil {
		closeAll()
		return nil, fmt.Errorf("starting %s: %w", c.Path, err)
	}
	stdin, stdout, stderr := pipes[0][1], pipes[1][0], pipes[2][0]
	// IOTransport.Connect cannot fail: it only wraps the pipes.
	conn, _ := (&mcp.IOTransport{
		Reader:        stdout,
		Writer:        timedWriter{stdin, writeTimeout},
		MaxLineLength: maxMessage,
	}).Connect(context.Background())
	p := &process{
		cmd:    cmd,
		conn:   conn,
		stdin:  stdin,
		logger: logger.With(zap.Int("pid", cmd.Process.Pid)),
		exited: make(chan struct{}),
	}
	stderrDone := make(chan struct{})
	go func() {
		defer close(stderrDone)
		p.logStderr(stderr)
		stderr.Close()
	}()
	go p.reap(stderr, stderrDone)
	return p, nil
}

// pid is the program's process id, which is also its process group's.
func (p *process) pid() int { return p.cmd.Process.Pid }

// reap waits for the program to exit, kills what is left of its process
// group, and reaps it (and the group's members re-parented to the
// gateway); then it waits (briefly) for the rest of its stderr.
func (p *process) reap(stderr *os.File, stderrDone <-chan struct{}) {
	var err error
	if awaitExit(p.pid()) {
		// The program is a zombie: its pid, and so its group id, cannot be
		// reused before it is reaped.
		p.mu.Lock()
		_ = signalGroup(p.cmd.Process, syscall.SIGKILL)
		err = p.cmd.Wait()
		p.reaped = true
		p.mu.Unlock()
		reapGroup(p.pid())
	} else {
		err = p.cmd.Wait()
		p.mu.Lock()
		_ = signalGroup(p.cmd.Process, syscall.SIGKILL)
		p.reaped = true
		p.mu.Unlock()
	}
	select {
	case <-stderrDone:
	case <-time.After(stderrDrain):
		stderr.Close() // ends the read, and logStderr
		<-stderrDone
	}
	p.exitErr = err
	close(p.exited)
}

// signal sends sig to the program's process group, unless it is reaped.
func (p *process) signal(sig syscall.Signal) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.reaped {
		_ = signalGroup(p.cmd.Process, sig)
	}
}

// stop ends the program as the MCP specification asks a client to end a
// stdio server (basic/lifecycle, "Shutdown"): close its stdin, wait for
// it to exit, SIGTERM after grace, SIGKILL after another grace. It
// returns once the program is reaped.
func (p *process) stop(grace time.Duration) {
	p.stdin.Close()
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGKILL} {
		timer := time.NewTimer(grace)
		select {
		case <-p.exited:
			timer.Stop()
			return
		case <-timer.C:
		}
		p.signal(sig)
	}
	<-p.exited
}

// kill ends the program at once, and returns once it is reaped.
func (p *process) kill() {
	p.signal(syscall.SIGKILL)
	<-p.exited
}

// exitReason describes how the program ended, with the last line it wrote
// to stderr, which is usually why, when quoteStderr. Call it after exited
// is closed. A pooled process serves one stateless client after another,
// so its stderr may be about another client's request: it is not quoted
// to them (the log has it).
func (p *process) exitReason(quoteStderr bool) string {
	reason := "the MCP server exited"
	if p.exitErr != nil {
		reason += " (" + p.exitErr.Error() + ")"
	}
	p.mu.Lock()
	lastWords, lastError := p.lastWords, p.lastError
	p.mu.Unlock()
	switch {
	case !quoteStderr || lastWords == "":
	case lastError != "" && lastError != lastWords:
		// Runtimes end a crash's report with lines that do not say
		// why: Node.js with its version ("Node.js v20.20.2"), Python
		// and Go with a stack.
		reason += "; its last stderr line reading as an error: " + lastError + "; its last: " + lastWords
	default:
		reason += "; its last stderr line: " + lastWords
	}
	return reason
}

// errorLine matches a line that reads as an error's report: "Error:
// Cannot find module", "ModuleNotFoundError: No module named x",
// "panic: ...", "Traceback (most recent call last):", "fatal: ...".
var errorLine = regexp.MustCompile(`^(?:[\w.$]*(?:Error|Exception)\b|panic:|fatal( error)?:|Traceback )`)

// readsAsError reports whether a line of stderr reads as an error's
// report (see errorLine).
func readsAsError(line string) bool {
	return errorLine.MatchString(strings.TrimSpace(line))
}

// logStderr logs each line the program writes to stderr, cut at
// maxStderrLine, until the pipe ends: at most stderrLinesPerSecond (after
// a burst of stderrLinesBurst), so that a program writing stderr in a loop
// cannot flood the log; the lines not logged are counted.
func (p *process) logStderr(stderr io.Reader) {
	lines := bufio.NewReaderSize(stderr, maxStderrLine)
	limiter := rate.NewLimiter(stderrLinesPerSecond, stderrLinesBurst)
	notLogged := 0
	defer func() {
		if notLogged > 0 {
			p.logger.Warn("stderr lines not logged: the MCP server wrote them faster than the log takes", zap.Int("lines", notLogged))
		}
	}()
	for {
		line, err := lines.ReadSlice('\n')
		truncated := errors.Is(err, bufio.ErrBufferFull)
		if len(line) > 0 {
			text := strings.TrimRight(string(line), "\r\n")
			if limiter.Allow() {
				fields := []zap.Field{zap.String("line", text)}
				if truncated {
					fields = append(fields, zap.Bool("truncated", true))
				}
				if notLogged > 0 {
					fields = append(fields, zap.Int("lines_not_logged_before", notLogged))
					notLogged = 0
				}
				p.logger.Info("stderr", fields...)
			} else {
				notLogged++
			}
			if strings.TrimSpace(text) != "" {
				p.mu.Lock()
				p.lastWords = truncate(text, maxLastWords)
				if readsAsError(text) {
					p.lastError = p.lastWords
				}
				p.mu.Unlock()
			}
		}
		for truncated {
			// Drop the rest of the line.
			_, err = lines.ReadSlice('\n')
			truncated = errors.Is(err, bufio.ErrBufferFull)
		}
		if err != nil {
			return
		}
	}
}

// truncate cuts s to at most n bytes, on a rune boundary.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "") + "…"
}

// timedWriter is the program's stdin: a write that the program does not
// take within timeout fails, so a program that stopped reading cannot
// hold a client's request forever.
type timedWriter struct {
	file    *os.File
	timeout time.Duration
}

func (w timedWriter) Write(p []byte) (int, error) {
	// Pipes support deadlines; where one could not be set, the write is
	// merely unbounded.
	_ = w.file.SetWriteDeadline(time.Now().Add(w.timeout))
	return w.file.Write(p)
}

func (w timedWriter) Close() error { return w.file.Close() }
