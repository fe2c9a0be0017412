package stdio

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// Defaults for the zero values of Config.
const (
	// DefaultMaxSessions bounds the session processes that run at once.
	DefaultMaxSessions = 32
	// DefaultIdleTimeout is how long a session may go without a POST in
	// progress before its process is stopped.
	DefaultIdleTimeout = 30 * time.Minute
	// DefaultInitTimeout is how long a new process may take to answer
	// initialize (npx may be downloading the server meanwhile).
	DefaultInitTimeout = 30 * time.Second
	// DefaultStopGrace is how long a process gets after its stdin closes
	// before SIGTERM, and again after SIGTERM before SIGKILL: the go-sdk's
	// CommandTransport waits as long.
	DefaultStopGrace = 5 * time.Second
	// DefaultMaxMessageSize bounds one JSON-RPC message in either
	// direction: the go-sdk's bound on a line from a stdio peer.
	DefaultMaxMessageSize = mcp.DefaultMaxLineLength
)

// Config is what a Server runs and within which limits. Zero values take
// the defaults above.
type Config struct {
	// Command is the program each session runs.
	Command Command
	// MaxSessions bounds the session processes that run at once; past it,
	// initialize is answered with HTTP 503.
	MaxSessions int
	// MaxSessionsPerCaller bounds the session processes one caller (as
	// WithCaller names it) runs at once, so that one caller cannot hold
	// them all; past it, the caller's initialize is answered with HTTP
	// 503. Zero: none but MaxSessions.
	MaxSessionsPerCaller int
	// IdleTimeout ends a session that has had no POST in progress for this
	// long. Open GET streams do not keep a session alive.
	IdleTimeout time.Duration
	// InitTimeout bounds the wait for a new process's answer to
	// initialize (past it, the process is killed), and for a process to
	// take a message off its stdin (past it, its session ends).
	InitTimeout time.Duration
	// StopGrace is how long a stopping process gets after its stdin
	// closes before SIGTERM, and after SIGTERM before SIGKILL; and how
	// long Close lets the POSTs in progress finish.
	StopGrace time.Duration
	// StatelessPool is how many warm processes serve stateless clients
	// (MCP 2026-07-28). Zero refuses stateless requests, so that clients
	// fall back to a session.
	StatelessPool int
	// MaxMessageSize bounds one JSON-RPC message, a POST body or a line the
	// server writes, in bytes.
	MaxMessageSize int
}

// Command is a program to run, with exactly the environment it gets.
type Command struct {
	// Path is the program. A name without a slash is looked up in the PATH
	// of Env.
	Path string
	// Args are its arguments.
	Args []string
	// Env is its whole environment, as KEY=value pairs (see Environment).
	Env []string
	// Dir is its working directory; empty is the gateway's.
	Dir string
}

// Environment returns the environment a server runs with: the configured
// variables, plus PATH and HOME from the gateway's own environment unless
// configured. Nothing else of the gateway's environment is passed, so
// that its secrets do not reach every server. HOME is passed because npx
// (npm) and most other launchers keep their cache and configuration under
// it, and fail without it when the user has no home in /etc/passwd, as
// arbitrary container users do not.
func Environment(configured map[string]string) []string {
	env := make([]string, 0, len(configured)+2)
	for _, name := range []string{"PATH", "HOME"} {
		if _, ok := configured[name]; ok {
			continue
		}
		if value, ok := os.LookupEnv(name); ok {
			env = append(env, name+"="+value)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(configured)) {
		env = append(env, name+"="+configured[name])
	}
	return env
}

// Validate reports what is wrong with the configuration, if anything.
func (c Config) Validate() error {
	var errs []error
	if c.Command.Path == "" {
		errs = append(errs, errors.New("no command to run"))
	}
	for _, pair := range c.Command.Env {
		if name, _, _ := strings.Cut(pair, "="); name == "" || !strings.Contains(pair, "=") {
			errs = append(errs, fmt.Errorf("environment entry %q is not NAME=value", pair))
		}
	}
	// No program can be given a NUL byte (the kernel reads each string up
	// to its first), and Go refuses to start one that would be.
	for _, field := range []struct {
		name   string
		values []string
	}{
		{"command", []string{c.Command.Path}},
		{"args", c.Command.Args},
		{"env", c.Command.Env},
		{"dir", []string{c.Command.Dir}},
	} {
		for _, value := range field.values {
			if strings.ContainsRune(value, 0) {
				errs = append(errs, fmt.Errorf("%s %q holds a NUL byte, which no program can be given", field.name, value))
			}
		}
	}
	for _, bound := range []struct {
		name  string
		value int64
	}{
		{"max_sessions", int64(c.MaxSessions)},
		{"max_sessions_per_caller", int64(c.MaxSessionsPerCaller)},
		{"idle_timeout", int64(c.IdleTimeout)},
		{"init_timeout", int64(c.InitTimeout)},
		{"stop_grace", int64(c.StopGrace)},
		{"stateless_pool", int64(c.StatelessPool)},
		{"max_message_size", int64(c.MaxMessageSize)},
	} {
		if bound.value < 0 {
			errs = append(errs, fmt.Errorf("%s must not be negative", bound.name))
		}
	}
	if most := c.withDefaults().MaxSessions; c.MaxSessionsPerCaller > most {
		errs = append(errs, fmt.Errorf("max_sessions_per_caller (%d) is more than max_sessions (%d), which bounds every caller's together", c.MaxSessionsPerCaller, most))
	}
	return errors.Join(errs...)
}

// withDefaults returns c with its zero values replaced by the defaults.
func (c Config) withDefaults() Config {
	if c.MaxSessions == 0 {
		c.MaxSessions = DefaultMaxSessions
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = DefaultIdleTimeout
	}
	if c.InitTimeout == 0 {
		c.InitTimeout = DefaultInitTimeout
	}
	if c.StopGrace == 0 {
		c.StopGrace = DefaultStopGrace
	}
	if c.MaxMessageSize == 0 {
		c.MaxMessageSize = DefaultMaxMessageSize
	}
	return c
}

// Unavailable says why the command could not start now, nil when it
// could: the program is not found in its PATH, or its folder is not
// there. Either may change before a client comes (a package installed,
// a volume mounted), so it is a warning at load, not an error.
func (c Command) Unavailable() error {
	path, err := c.lookPath()
	if err != nil {
		return err
	}
	if path == c.Path {
		// A path of its own (lookPath checks those it finds): a
		// relative one is the folder's, as exec runs it.
		if !filepath.IsAbs(path) && c.Dir != "" {
			path = filepath.Join(c.Dir, path)
		}
		switch info, err := os.Stat(path); {
		case err != nil:
			return fmt.Errorf("the program: %w", err)
		case info.IsDir() || info.Mode()&0o111 == 0:
			return fmt.Errorf("the program %q is not an executable file", path)
		}
	}
	if c.Dir != "" {
		if info, err := os.Stat(c.Dir); err != nil {
			return fmt.Errorf("its folder: %w", err)
		} else if !info.IsDir() {
			return fmt.Errorf("its folder %q is not a folder", c.Dir)
		}
	}
	return nil
}

// Identity names what the command runs, however its configuration spells
// it, so that two commands of one identity are one MCP server: the
// program as it would be found now (looked up in the command's own PATH,
// made absolute against its folder, symbolic links followed, beside the
// name it is called by, which a program serving several commands reads),
// its arguments, its whole environment (as the program gets it: see
// environment) and its folder (absolute, links followed; empty is the
// gateway's). A program not found now is named as
// written, cleaned.
func (c Command) Identity() string {
	dir := canonicalPath(c.Dir)
	path, err := c.lookPath()
	if err != nil {
		path = c.Path
	}
	if !filepath.IsAbs(path) && strings.ContainsRune(path, filepath.Separator) {
		// A relative program is its folder's, as exec runs it.
		path = filepath.Join(dir, path)
	}
	name, err := json.Marshal(struct {
		Program  string   `json:"program"`
		CalledAs string   `json:"called_as"`
		Args     []string `json:"args"`
		Env      []string `json:"env"`
		Dir      string   `json:"dir"`
	}{canonicalPath(path), filepath.Base(path), c.Args, c.environment(), dir})
	if err != nil {
		// Unreachable: strings and lists of strings.
		return fmt.Sprintf("%q", c)
	}
	return string(name)
}

// canonicalPath is path made absolute (against the gateway's working
// folder), cleaned and with its symbolic links followed where they can be
// (a path that does not exist now is left cleaned).
func canonicalPath(path string) string {
	if abs, err := filepath.Abs(path); err == nil {
		path = abs
	}
	if real, err := filepath.EvalSymlinks(path); err == nil {
		return real
	}
	return filepath.Clean(path)
}

// lookPath resolves the program the way a shell with the command's own
// PATH, started in the command's folder, would, rather than with the
// gateway's (which is what exec.Command would use). A program it finds
// in a relative folder of that PATH ("", ".", "bin") is that folder's in
// the command's, and returned absolute: exec.Command, given a name
// without a slash, would look it up again in the gateway's PATH.
func (c Command) lookPath() (string, error) {
	if strings.ContainsRune(c.Path, filepath.Separator) {
		return c.Path, nil
	}
	var path string
	for _, pair := range c.Env {
		if value, ok := strings.CutPrefix(pair, "PATH="); ok {
			path = value
		}
	}
	for _, dir := range filepath.SplitList(path) {
		if !filepath.IsAbs(dir) {
			dir = filepath.Join(c.Dir, dir)
			if abs, err := filepath.Abs(dir); err == nil {
				dir = abs
			}
		}
		candidate := filepath.Join(dir, c.Path)
		if info, err := os.Stat(candidate); err == nil && !info.IsDir() && info.Mode()&0o111 != 0 {
			return candidate, nil
		}
	}
	return "", fmt.Errorf("%q not found in the server's PATH %q", c.Path, path)
}

// environment is the command's environment as the program gets it: of a
// name given more than once, the last value (as exec.Cmd passes it), in
// the order of the names, however the configuration listed them.
func (c Command) environment() []string {
	values := make(map[string]string, len(c.Env))
	for _, pair := range c.Env {
		name, value, _ := strings.Cut(pair, "=")
		values[name] = value
	}
	env := make([]string, 0, len(values))
	for _, name := range slices.Sorted(maps.Keys(values)) {
		env = append(env, name+"="+values[name])
	}
	return env
}
