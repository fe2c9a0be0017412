package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/open-policy-agent/opa/v1/loader"
	"github.com/open-policy-agent/opa/v1/tester"
	"github.com/spf13/cobra"

	"github.com/mcpgate/mcpgate/caddymodule/policy"
	"github.com/mcpgate/mcpgate/policies"
)

func init() {
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  "policy",
		Usage: "test|eval ...",
		Short: "Tests and evaluates mcpgate policies",
		Long: `
Works with mcpgate's Rego policies offline, with the same OPA the gateway
runs.

  mcpgate policy test ./policies ./examples/email
  mcpgate policy eval --input call.json ./policies ./examples/email
  mcpgate policy eval --input call.json --data permissions.json
`,
		CobraFunc: func(cmd *cobra.Command) {
			parentCommand(cmd)
			testCmd := &cobra.Command{
				Use:   "test <path>...",
				Short: "Runs the Rego tests in the given files and folders",
				Long: `
Runs every test_ rule in the Rego files and folders given (folders are read
recursively, .json and .yaml files in them load as data, as with opa test),
printing PASS or FAIL for each test and a summary. Built-in errors are
errors, as they are in the gateway. Exits non-zero when a test fails or
errs, or when no test is found.
`,
			}
			testCmd.RunE = caddycmd.WrapCommandFuncForCobra(func(fl caddycmd.Flags) (int, error) {
				return runPolicyTests(context.Background(), testCmd.OutOrStdout(), fl.Args())
			})
			cmd.AddCommand(testCmd)

			evalCmd := &cobra.Command{
				Use:   "eval --input <file> [--query <ref>] [--data <file>]... [<path>...]",
				Short: "Prints the decision a policy gives one input",
				Long: `
Decides one policy input (a JSON file in the shape documented in docs/policy.md,
"Policy input"; - reads standard input) with the gateway's own policy
engine, and prints the decision as JSON. Like the gateway it fails closed:
a policy that gives no valid decision prints a block with the reason, and
the command exits non-zero.

The policy is the Rego files and folders given, or, when none is given, the
library built into mcpgate (the one in policies/). --data adds a JSON or
YAML data file, such as a permissions.json holding
{"mcp": {"permissions": {...}}}; repeat it for more. --query names the
decision (default data.mcp.decision); data.mcp.tool_permission has the
same shape.
`,
			}
			evalCmd.Flags().StringP("input", "i", "", "Policy input document (JSON file, or - for standard input)")
			evalCmd.Flags().StringP("query", "q", policy.DefaultDecisionQuery, "Rego reference of the decision")
			evalCmd.Flags().StringArrayP("data", "d", nil, "Data file (JSON or YAML) to add; repeatable")
			evalCmd.Flags().Duration("timeout", policy.DefaultTimeout, "How long the evaluation may take, as the handler's eval_timeout")
			evalCmd.RunE = caddycmd.WrapCommandFuncForCobra(func(fl caddycmd.Flags) (int, error) {
				data, err := evalCmd.Flags().GetStringArray("data")
				if err != nil {
					return caddy.ExitCodeFailedStartup, err
				}
				if strings.TrimSpace(fl.String("query")) == "" {
					return caddy.ExitCodeFailedStartup, errors.New("policy eval: --query is empty; leave it out for data.mcp.decision")
				}
				return evalPolicy(context.Background(), evalCmd.InOrStdin(), evalCmd.OutOrStdout(), evalRequest{
					Input:     fl.String("input"),
					Query:     fl.String("query"),
					DataFiles: data,
					Paths:     fl.Args(),
					Timeout:   fl.Duration("timeout"),
				})
			})
			cmd.AddCommand(evalCmd)
		},
	})
}

// runPolicyTests runs the Rego tests in paths and reports them to w as
// `opa test -v` does. Failing, erring or missing tests are an error.
func runPolicyTests(ctx context.Context, w io.Writer, paths []string) (int, error) {
	if len(paths) == 0 {
		return caddy.ExitCodeFailedStartup, errors.New("policy test: give the Rego files or folders to test")
	}
	// The policy's files as the gateway reads them (hidden folders, say,
	// left out), and the tests beside them.
	modules, store, err := tester.Load(paths, policy.LoadFilter(true))
	if err != nil {
		return caddy.ExitCodeFailedStartup, fmt.Errorf("loading %s: %w", strings.Join(paths, ", "), err)
	}
	ch, err := tester.NewRunner().
		SetStore(store).
		RaiseBuiltinErrors(true).
		CapturePrintOutput(true).
		SetModules(modules).
		RunTests(ctx, nil)
	if err != nil {
		return caddy.ExitCodeFailedStartup, fmt.Errorf("compiling the tests: %w", err)
	}
	var results []*tester.Result
	failed := 0
	for r := range ch {
		results = append(results, r)
		if r.Fail || r.Error != nil {
			failed++
		}
	}
	if len(results) == 0 {
		return caddy.ExitCodeFailedStartup, fmt.Errorf("no Rego tests found in %s", strings.Join(paths, ", "))
	}
	// The runner runs tests in parallel; report them in file order.
	slices.SortStableFunc(results, func(a, b *tester.Result) int {
		if a.Location == nil || b.Location == nil {
			return 0
		}
		return cmp.Or(cmp.Compare(a.Location.File, b.Location.File), cmp.Compare(a.Location.Row, b.Location.Row))
	})
	report := make(chan *tester.Result, len(results))
	for _, r := range results {
		report <- r
	}
	close(report)
	if err := (tester.PrettyReporter{Output: w, Verbose: true}).Report(report); err != nil {
		return caddy.ExitCodeFailedStartup, fmt.Errorf("reporting the test results: %w", err)
	}
	if failed > 0 {
		return caddy.ExitCodeFailedStartup, fmt.Errorf("%d of %d Rego tests failed", failed, len(results))
	}
	return caddy.ExitCodeSuccess, nil
}

// evalRequest is what `mcpgate policy eval` was asked.
type evalRequest struct {
	// Input is the input document's file; "-" reads stdin.
	Input string
	// Query is the decision reference; the engine's default when empty.
	Query string
	// DataFiles are JSON or YAML files merged into the data document.
	DataFiles []string
	// Paths are the policy's files and folders; none means the library
	// built into mcpgate.
	Paths []string
	// Timeout bounds the evaluation; the engine's default when zero.
	Timeout time.Duration
}

// evalPolicy decides one input with the gateway's engine and prints the
// decision to w. A decision the engine had to make up (the policy gave
// none that is valid) is printed too, and is an error.
func evalPolicy(ctx context.Context, stdin io.Reader, w io.Writer, req evalRequest) (int, error) {
	if req.Input == "" {
		return caddy.ExitCodeFailedStartup, errors.New("policy eval: --input is required")
	}
	if req.Timeout < 0 {
		return caddy.ExitCodeFailedStartup, fmt.Errorf("policy eval: --timeout %s is negative", req.Timeout)
	}
	raw, err := readInputFile(stdin, req.Input)
	if err != nil {
		return caddy.ExitCodeFailedStartup, err
	}
	input, err := policy.ParseInput(raw)
	if err != nil {
		return caddy.ExitCodeFailedStartup, fmt.Errorf("input %s: %w", req.Input, err)
	}
	data, err := loadDataFiles(req.DataFiles)
	if err != nil {
		return caddy.ExitCodeFailedStartup, err
	}
	opts := policy.Options{Paths: req.Paths, Query: req.Query, Data: data, Timeout: req.Timeout}
	if len(req.Paths) == 0 {
		opts.Modules = policies.Library()
	}
	engine, err := policy.New(ctx, opts)
	if err != nil {
		return caddy.ExitCodeFailedStartup, err
	}
	defer engine.Close()

	decision, decideErr := engine.Decide(ctx, input)
	out, err := json.MarshalIndent(decision, "", "  ")
	if err != nil {
		return caddy.ExitCodeFailedStartup, err
	}
	if _, err := fmt.Fprintf(w, "%s\n", out); err != nil {
		return caddy.ExitCodeFailedStartup, err
	}
	if decideErr != nil {
		return caddy.ExitCodeFailedStartup, fmt.Errorf("the policy gave no valid decision: %w", decideErr)
	}
	return caddy.ExitCodeSuccess, nil
}

func readInputFile(stdin io.Reader, name string) ([]byte, error) {
	var raw []byte
	var err error
	if name == "-" {
		raw, err = io.ReadAll(stdin)
	} else {
		raw, err = os.ReadFile(name)
	}
	if err != nil {
		return nil, fmt.Errorf("reading input %s: %w", name, err)
	}
	return raw, nil
}

// loadDataFiles reads JSON or YAML data files, each merged at the root of
// the data document as `opa eval --data` does.
func loadDataFiles(files []string) (map[string]any, error) {
	if len(files) == 0 {
		return nil, nil
	}
	loaded, err := loader.NewFileLoader().All(files)
	if err != nil {
		return nil, fmt.Errorf("loading data %s: %w", strings.Join(files, ", "), err)
	}
	if len(loaded.Modules) > 0 {
		return nil, fmt.Errorf("--data takes JSON or YAML files; give Rego files as paths")
	}
	return loaded.Documents, nil
}
