package main

import (
	"debug/buildinfo"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
)

// buildMcpgate builds this command into a temporary folder and returns the
// binary's path.
func buildMcpgate(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), binaryName)
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// runMcpgate runs bin with args in an empty folder and returns its output.
func runMcpgate(t *testing.T, bin string, args ...string) string {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Dir = t.TempDir()
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("mcpgate %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// usageLines returns the lines of help output under its "Usage:" heading.
func usageLines(help string) []string {
	_, usage, found := strings.Cut(help, "Usage:\n")
	if !found {
		return nil
	}
	usage, _, _ = strings.Cut(usage, "\n\n")
	return strings.Split(usage, "\n")
}

// TestHelpNamesMcpgate runs the built binary's help: it names mcpgate, every
// usage line starts with mcpgate, and no line reads as a caddy command.
func TestHelpNamesMcpgate(t *testing.T) {
	bin := buildMcpgate(t)
	tests := []struct {
		name string
		args []string
		want []string
	}{
		{"root", []string{"--help"}, []string{
			"mcpgate is a policy gateway for MCP servers", "mcpgate [command]", "help for mcpgate",
			"\n  approvals ", "\n  policy ", "\n  tools ", "\n  run ", "\n  version ",
		}},
		{"approvals", []string{"approvals", "--help"}, []string{"mcpgate approvals [command]", "mcpgate approvals list"}},
		{"approvals approve", []string{"approvals", "approve", "--help"}, []string{"mcpgate approvals approve <id>"}},
		{"policy", []string{"policy", "--help"}, []string{"mcpgate policy [command]", "mcpgate policy test ./policies"}},
		{"policy eval", []string{"policy", "eval", "--help"}, []string{"mcpgate policy eval --input <file>"}},
		{"tools", []string{"tools", "--help"}, []string{"mcpgate tools [command]", "mcpgate tools list"}},
		{"run", []string{"run", "--help"}, []string{"mcpgate run [--config <path>"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			help := runMcpgate(t, bin, tt.args...)
			for _, want := range tt.want {
				if !strings.Contains(help, want) {
					t.Errorf("expected the help to contain %q, got:\n%s", want, help)
				}
			}
			usage := usageLines(help)
			if len(usage) == 0 {
				t.Errorf("expected a Usage: section, got:\n%s", help)
			}
			for _, line := range usage {
				if !strings.HasPrefix(strings.TrimSpace(line), binaryName+" ") {
					t.Errorf("expected usage lines to start with %q, got %q in:\n%s", binaryName+" ", line, help)
				}
			}
			for line := range strings.Lines(help) {
				if strings.HasPrefix(strings.TrimSpace(line), "caddy ") {
					t.Errorf("expected no line to start with \"caddy \", got %q in:\n%s", line, help)
				}
			}
		})
	}
}

// TestVersionNamesBoth runs the built binary's version command and flag:
// both print mcpgate's version with Caddy's beside it.
func TestVersionNamesBoth(t *testing.T) {
	bin := buildMcpgate(t)
	info, err := buildinfo.ReadFile(bin)
	if err != nil {
		t.Fatalf("reading the build information of %s: %v", bin, err)
	}
	_, caddyVersion := caddy.Version()
	want := "mcpgate " + mcpgateVersion(info) + " on caddy " + caddyVersion + "\n"
	for _, args := range [][]string{{"version"}, {"--version"}} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			if got := runMcpgate(t, bin, args...); got != want {
				t.Errorf("expected %q, got %q", want, got)
			}
		})
	}
}

// TestMcpgateVersion covers the versions the Go toolchain records: a
// module version, and a development build with or without VCS details.
func TestMcpgateVersion(t *testing.T) {
	vcs := func(modified string) []debug.BuildSetting {
		return []debug.BuildSetting{
			{Key: "vcs", Value: "git"},
			{Key: "vcs.revision", Value: "e79ee818a541fd493dcc348503c37727a8a21d3f"},
			{Key: "vcs.modified", Value: modified},
		}
	}
	tests := []struct {
		name     string
		version  string
		settings []debug.BuildSetting
		want     string
	}{
		{"release", "v0.9.0", nil, "v0.9.0"},
		{"pseudo-version from the checkout", "v0.0.0-20261130083529-e79ee818a541+dirty", vcs("true"), "v0.0.0-20261130083529-e79ee818a541+dirty"},
		{"devel, clean checkout", "(devel)", vcs("false"), "(devel) e79ee818a541fd493dcc348503c37727a8a21d3f"},
		{"devel, modified checkout", "(devel)", vcs("true"), "(devel) e79ee818a541fd493dcc348503c37727a8a21d3f+modified"},
		{"devel, no VCS", "(devel)", nil, "(devel)"},
		{"no version", "", nil, "(devel)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			info := &debug.BuildInfo{Main: debug.Module{Path: "github.com/mcpgate/mcpgate", Version: tt.version}, Settings: tt.settings}
			if got := mcpgateVersion(info); got != tt.want {
				t.Errorf("expected %q, got %q", tt.want, got)
			}
		})
	}
}
