// Package childtest runs part of a test (an upstream, most often) in a
// process of its own: the test binary again, told by an environment
// variable what to serve. An upstream in its own process keeps its memory
// and garbage collection out of the gateway's figures, and can be killed
// as a crash would kill it.
package childtest

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Child is a process started by Start.
type Child struct {
	// Line is the first line the child wrote on its standard output (its
	// URL, for one started with ServeHTTP), without the line break.
	Line string
	cmd  *exec.Cmd
}

// Start runs this test binary again, with env set to 1 and the given
// arguments (by default -test.run=^$, so that only TestMain runs), and
// returns once the child has written its first line. The child's standard
// input closes when the test ends, which ends a child serving with
// ServeHTTP; one still running then is killed.
func Start(tb testing.TB, env string, args ...string) *Child {
	tb.Helper()
	if len(args) == 0 {
		args = []string{"-test.run=^$"}
	}
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), env+"=1")
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		tb.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		tb.Fatalf("starting the child process (%s): %v", env, err)
	}
	c := &Child{cmd: cmd}
	tb.Cleanup(func() {
		_ = stdin.Close()
		c.Kill()
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		tb.Fatalf("reading the first line of the child process (%s): %v", env, err)
	}
	c.Line = strings.TrimSpace(line)
	return c
}

// Kill ends the child at once (SIGKILL), as a crash would, and waits until
// it is gone. Killing a child that has ended does nothing.
func (c *Child) Kill() {
	if c.cmd.ProcessState != nil {
		return
	}
	_ = c.cmd.Process.Kill()
	_ = c.cmd.Wait()
}

// ServeHTTP, called in the child (from TestMain, when its environment
// variable is set), serves handler on a free loopback port, writes its URL
// as the first line of standard output, and exits when standard input
// closes; it never returns. name says whose errors it reports.
func ServeHTTP(name string, handler http.Handler) {
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		os.Exit(1)
	}
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		os.Exit(0)
	}()
	fmt.Printf("http://%s\n", listener.Addr())
	fmt.Fprintf(os.Stderr, "%s: %v\n", name, http.Serve(listener, handler))
	os.Exit(1)
}

// Main is a test binary's TestMain for tests that start children: in a
// child started with env set it runs serve (which should not return),
// else the tests.
func Main(m *testing.M, env string, serve func()) {
	if os.Getenv(env) != "" {
		serve()
		return
	}
	os.Exit(m.Run())
}

// CPUTime returns how much processor time the child's threads have had so
// far (see ProcessCPUTime).
func (c *Child) CPUTime() (time.Duration, error) {
	return ProcessCPUTime(c.cmd.Process.Pid)
}

// ProcessCPUTime returns how much processor time the threads of process
// pid have had so far, from Linux's per-thread scheduler statistics
// (/proc/<pid>/task/*/schedstat, whose first field is nanoseconds on a
// processor): finer than the clock ticks of /proc/<pid>/stat, and
// readable for a child that runs, unlike getrusage's. (The Go runtime
// seldom ends a thread, so threads gone are not missed.) It fails on a
// system without them.
func ProcessCPUTime(pid int) (time.Duration, error) {
	tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/schedstat", pid))
	if err != nil || len(tasks) == 0 {
		return 0, fmt.Errorf("reading the processor time of process %d: no scheduler statistics (%v)", pid, err)
	}
	var total time.Duration
	for _, task := range tasks {
		data, err := os.ReadFile(task)
		if err != nil {
			continue // a thread that ended meanwhile
		}
		fields := strings.Fields(string(data))
		if len(fields) == 0 {
			return 0, fmt.Errorf("reading the processor time of process %d: %s is empty", pid, task)
		}
		ns, err := strconv.ParseInt(fields[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("reading the processor time of process %d from %s: %w", pid, task, err)
		}
		total += time.Duration(ns)
	}
	return total, nil
}
