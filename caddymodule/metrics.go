package caddymodule

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// gatewayMetrics are the gateway's Prometheus metrics, registered in
// Caddy's registry so they appear on Caddy's metrics endpoint.
type gatewayMetrics struct {
	decisions   *prometheus.CounterVec
	recalled    *prometheus.CounterVec
	evalSeconds *prometheus.HistogramVec
}

// unlistedTool is the tool label of calls naming a tool the upstream never
// listed: clients choose tool names, and unbounded label values would let
// any client grow the metrics without limit.
const unlistedTool = "(unlisted)"

func newGatewayMetrics(registry prometheus.Registerer) (*gatewayMetrics, error) {
	decisions, err := registerOrReuse(registry, prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "mcpgate",
		Name:      "decisions_total",
		Help:      "Policy decisions on MCP messages, by server, tool (empty for other methods) and action.",
	}, []string{"server", "tool", "action"}))
	if err != nil {
		return nil, err
	}
	recalled, err := registerOrReuse(registry, prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "mcpgate",
		Name:      "decisions_recalled_total",
		Help:      "Policy decisions recalled from the decision cache rather than evaluated, by server.",
	}, []string{"server"}))
	if err != nil {
		return nil, err
	}
	evalSeconds, err := registerOrReuse(registry, prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: "mcpgate",
		Name:      "policy_evaluation_seconds",
		Help:      "Time to evaluate the policy for one MCP message (decisions recalled from the cache are not evaluated, and not counted).",
		Buckets:   []float64{.00001, .000025, .00005, .0001, .00025, .0005, .001, .0025, .005, .01, .05, .25, 1},
	}, []string{"server"}))
	if err != nil {
		return nil, err
	}
	return &gatewayMetrics{decisions: decisions, recalled: recalled, evalSeconds: evalSeconds}, nil
}

// registerOrReuse registers c, or returns the collector already registered
// under the same description (several mcp_policy handlers share one
// registry).
func registerOrReuse[C prometheus.Collector](registry prometheus.Registerer, c C) (C, error) {
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
