package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/caddytest"
	"github.com/mcpgate/mcpgate/internal/nodetest"
	"github.com/mcpgate/mcpgate/internal/testport"
)

// inspectorDir holds the MCP Inspector the tour uses, pinned by its
// lockfile.
const inspectorDir = "testdata/inspector"

// tourStep is one command block of README.md's tour and the output the
// page shows for it.
type tourStep struct {
	script, want string
}

// readTour returns the steps of README.md's tour: each sh block, and the
// text block after it (a block without one shows no output).
func readTour(t *testing.T) []tourStep {
	t.Helper()
	raw, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	text := string(raw)
	start := strings.Index(text, "## A five-minute tour")
	if start < 0 {
		t.Fatal("README.md has no tour")
	}
	text = text[start+1:]
	if end := strings.Index(text, "\n## "); end >= 0 {
		text = text[:end]
	}
	blocks := regexp.MustCompile("(?s)```(sh|text)\n(.*?)```").FindAllStringSubmatch(text, -1)
	var steps []tourStep
	for _, block := range blocks {
		switch {
		case block[1] == "sh":
			steps = append(steps, tourStep{script: block[2]})
		case len(steps) > 0 && steps[len(steps)-1].want == "":
			steps[len(steps)-1].want = block[2]
		default:
			t.Fatalf("README.md's tour has an output block that follows no command: %q", block[2])
		}
	}
	if len(steps) == 0 {
		t.Fatal("README.md's tour has no commands")
	}
	return steps
}

// inspectorCommand returns the pinned Inspector's command, installing it
// first if need be.
func inspectorCommand(t *testing.T) string {
	t.Helper()
	nodetest.Node(t, inspectorDir, filepath.Join("node_modules", ".bin", "mcp-inspector"))
	bin, err := filepath.Abs(filepath.Join(inspectorDir, "node_modules", ".bin", "mcp-inspector"))
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

// TestReadmeTour runs the tour of README.md, as written, against the demo
// (the root Caddyfile on free ports, run by the mcpgate binary), and
// checks that every command prints what the page says it prints.
func TestReadmeTour(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skipf("curl is not installed: %v", err)
	}
	steps := readTour(t)
	inspector := inspectorCommand(t)
	bin := buildMcpgate(t)

	// The demo, on free ports, from a folder of its own (where its admin
	// socket is made, and where the tour's commands run, as they would
	// at the repository's root).
	dir := t.TempDir()
	policies, err := filepath.Abs("../../policies")
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile("../../Caddyfile")
	if err != nil {
		t.Fatal(err)
	}
	gatewayPort, demoPort, hookPort := testport.Free(t), testport.Free(t), testport.Free(t)
	ports := strings.NewReplacer(
		"8080", fmt.Sprint(gatewayPort),
		"9000", fmt.Sprint(demoPort),
		"9001", fmt.Sprint(hookPort),
	)
	caddyfile := strings.NewReplacer(
		"admin unix/mcpgate-admin.sock", fmt.Sprintf("admin unix/mcpgate-admin.sock\n\tstorage file_system %q", filepath.Join(dir, "storage")),
		"./policies", policies,
	).Replace(ports.Replace(string(raw)))
	if err := os.WriteFile(filepath.Join(dir, "Caddyfile"), []byte(caddyfile), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	demo := exec.CommandContext(ctx, bin, "run")
	demo.Dir = dir
	demo.Env = append(os.Environ(), "XDG_DATA_HOME="+filepath.Join(dir, "data"), "XDG_CONFIG_HOME="+filepath.Join(dir, "config"))
	var demoLog bytes.Buffer
	demo.Stdout, demo.Stderr = &demoLog, &demoLog
	if err := demo.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		_ = demo.Wait()
		if t.Failed() {
			t.Logf("the demo's log:\n%s", demoLog.String())
		}
	})
	caddytest.WaitForListener(t, gatewayPort)

	// One shell runs every step, so that what a step defines (SESSION,
	// mcp) the next can use; a marker before each step's output tells
	// them apart.
	var script strings.Builder
	script.WriteString("set -e -o pipefail\n")
	commands := strings.NewReplacer(
		"npx -y @modelcontextprotocol/inspector@2.12.0", inspector,
		"go run ./cmd/mcpgate", bin,
	)
	for i, step := range steps {
		fmt.Fprintf(&script, "printf '\\n@@step %d\\n'\n%s\n", i, commands.Replace(ports.Replace(step.script)))
	}
	runCtx, stop := context.WithTimeout(ctx, 3*time.Minute)
	defer stop()
	shell := exec.CommandContext(runCtx, "bash", "-c", script.String())
	shell.Dir = dir
	// Files, not pipes: a command the tour leaves in the background
	// (until the demo stops) must not hold the test up.
	stdout, err := os.Create(filepath.Join(dir, "tour.out"))
	if err != nil {
		t.Fatal(err)
	}
	stderr, err := os.Create(filepath.Join(dir, "tour.err"))
	if err != nil {
		t.Fatal(err)
	}
	shell.Stdout, shell.Stderr = stdout, stderr
	runErr := shell.Run()
	stdout.Close()
	stderr.Close()
	out, _ := os.ReadFile(stdout.Name())
	errOut, _ := os.ReadFile(stderr.Name())
	if runErr != nil {
		t.Fatalf("the tour failed: %v\n%s\nstderr:\n%s", runErr, out, errOut)
	}
	outputs := regexp.MustCompile(`(?m)^@@step \d+\n`).Split(string(out), -1)[1:]
	if len(outputs) != len(steps) {
		t.Fatalf("the tour printed %d steps' output, want %d:\n%s", len(outputs), len(steps), out)
	}
	for i, step := range steps {
		want := ports.Replace(step.want)
		if got := outputs[i]; strings.TrimSpace(got) != strings.TrimSpace(want) {
			t.Errorf("step %d:\n%s\nprinted:\n%s\nREADME.md says:\n%s", i, step.script, got, want)
		}
	}
}
