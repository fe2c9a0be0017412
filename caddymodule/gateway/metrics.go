package gateway

import (
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mcpgate/mcpgate/caddymodule/policy"
)

// Metrics are the gateway's Prometheus metrics.
type Metrics struct {
	decisions   *prometheus.CounterVec
	recalled    *prometheus.CounterVec
	evalSeconds *prometheus.HistogramVec
	reloads     *prometheus.CounterVec
	toolCalls   *prometheus.CounterVec
	toolSeconds *prometheus.HistogramVec
}

// unlistedTool is the tool label of calls naming a tool the upstream never
// listed: clients choose tool names, and unbounded label values would let
// any client grow the metrics without limit.
const unlistedTool = "(unlisted)"

// NewMetrics registers the gateway's metrics in registry, or finds them
// there when another gateway registered them first.
func NewMetrics(registry prometheus.Registerer) (*Metrics, error) {
	decisions, err := RegisterOrReuse(registry, prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "mcpgate",
		Name:      "decisions_total",
		Help:      "Policy decisions on MCP messages, by server, tool (empty for other methods) and action.",
	}, []string{"server", "tool", "action"}))
	if err != nil {
		return nil, err
	}
	recalled, err := RegisterOrReuse(registry, prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "mcpgate",
		Name:      "decisions_recalled_total",
		Help:      "Policy decisions recalled from the decision cache rather than evaluated, by server.",
	}, []string{"server"}))
	if err != nil {
		return nil, err
	}
	evalSeconds, err := RegisterOrReuse(registry, prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: "mcpgate",
		Name:      "policy_evaluation_seconds",
		Help:      "Time to evaluate the policy for one MCP message (decisions recalled from the cache are not evaluated, and not counted).",
		Buckets:   []float64{.00001, .000025, .00005, .0001, .00025, .0005, .001, .0025, .005, .01, .05, .25, 1},
	}, []string{"server"}))
	if err != nil {
		return nil, err
	}
	reloads, err := RegisterOrReuse(registry, prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "mcpgate",
		Name:      "policy_reloads_total",
		Help:      "Policy reloads after the first load (watched files, bundles), by result: ok, or failed (the previous policy stays in force).",
	}, []string{"result"}))
	if err != nil {
		return nil, err
	}
	toolCalls, err := RegisterOrReuse(registry, prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "mcpgate",
		Name:      "tool_calls_total",
		Help:      "Tool calls forwarded to the server, by server, tool and outcome: ok, tool_error (a result with isError), error (a JSON-RPC error), cancelled (by the client), or failed (no answer came).",
	}, []string{"server", "tool", "outcome"}))
	if err != nil {
		return nil, err
	}
	toolSeconds, err := RegisterOrReuse(registry, prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: "mcpgate",
		Name:      "tool_call_seconds",
		Help:      "Time from forwarding a tool call to the server until its answer came (or it failed or was cancelled), by server and tool.",
		Buckets:   []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300},
	}, []string{"server", "tool"}))
	if err != nil {
		return nil, err
	}
	return &Metrics{decisions: decisions, recalled: recalled, evalSeconds: evalSeconds, reloads: reloads,
		toolCalls: toolCalls, toolSeconds: toolSeconds}, nil
}

// PolicyReloaded counts a policy reload, for policy.Options.OnReload.
func (m *Metrics) PolicyReloaded(err error) {
	result := "ok"
	if err != nil {
		result = "failed"
	}
	m.reloads.WithLabelValues(result).Inc()
}

// upstreamMetrics are the metrics of one upstream, with the series that
// only the upstream names found once rather than on every decision.
type upstreamMetrics struct {
	decisions   *prometheus.CounterVec
	recalled    prometheus.Counter
	evalSeconds prometheus.Observer
	toolCalls   *prometheus.CounterVec
	toolSeconds *prometheus.HistogramVec
	upstream    string
}

// of returns the metrics of the named upstream.
func (m *Metrics) of(upstream string) upstreamMetrics {
	return upstreamMetrics{
		decisions:   m.decisions,
		recalled:    m.recalled.WithLabelValues(upstream),
		evalSeconds: m.evalSeconds.WithLabelValues(upstream),
		toolCalls:   m.toolCalls,
		toolSeconds: m.toolSeconds,
		upstream:    upstream,
	}
}

// count records one decision and, when the policy was evaluated for it,
// how long that took.
func (m upstreamMetrics) count(toolLabel string, d policy.Decision, elapsed time.Duration, evaluated bool) {
	switch {
	case d.Cached:
		m.recalled.Inc()
	case evaluated:
		m.evalSeconds.Observe(elapsed.Seconds())
	}
	m.decisions.WithLabelValues(m.upstream, toolLabel, string(d.Action)).Inc()
}

// toolCall records what became of a tool call forwarded to the server
// (a toolOutcome), and how long after it was forwarded.
func (m upstreamMetrics) toolCall(tool string, outcome toolOutcome, elapsed time.Duration) {
	m.toolCalls.WithLabelValues(m.upstream, tool, string(outcome)).Inc()
	m.toolSeconds.WithLabelValues(m.upstream, tool).Observe(elapsed.Seconds())
}

// RegisterOrReuse registers c, or returns the collector already registered
// under the same description (several gateways share one registry).
func RegisterOrReuse[C prometheus.Collector](registry prometheus.Registerer, c C) (C, error) {
	err := registry.Register(c)
	if err == nil {
		return c, nil
	}
	var already prometheus.AlreadyRegisteredError
	if errors.As(err, &already) {
		if existing, ok := already.ExistingCollector.(C); ok {
			return existing, nil
		}
	}
	return c, fmt.Errorf("registering metrics: %w", err)
}
