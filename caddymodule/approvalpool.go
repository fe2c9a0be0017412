package caddymodule

import (
	"context"
	"fmt"

	"github.com/caddyserver/caddy/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/mcpgate/mcpgate/caddymodule/approval"
)

// approvalServices holds one approval service per store and instance. It
// lives outside any one config, so pending approvals (and the calls held
// on them) survive config reloads; only the settings follow the newest
// config.
var approvalServices = caddy.NewUsagePool()

// sharedApprovals wraps an approval service for the usage pool.
type sharedApprovals struct {
	*approval.Service
	instance string
}

// Destruct implements caddy.Destructor: it stops webhook deliveries and
// closes the store once no config uses the service.
func (s sharedApprovals) Destruct() error {
	return s.Close()
}

// loadApprovals returns the service for the handler's approval config,
// starting it on first use, and gives it the config's settings. Each call
// must be matched by releaseApprovals with the same key.
func loadApprovals(ctx caddy.Context, r *resolvedApproval) (*approval.Service, error) {
	metrics, err := newApprovalMetrics(ctx.GetMetricsRegistry(), r.instance)
	if err != nil {
		return nil, err
	}
	settings := r.settings
	settings.Logger = ctx.Logger().Named("approvals")
	settings.Metrics = metrics
	value, loaded, err := approvalServices.LoadOrNew(r.poolKey(), func() (caddy.Destructor, error) {
		newStore := func(onChange approval.ChangeFunc) (approval.Store, error) {
			return approval.NewMemoryStore(onChange), nil
		}
		if r.store == storeRedis {
			newStore = func(onChange approval.ChangeFunc) (approval.Store, error) {
				return approval.NewRedisStore(r.redis, onChange)
			}
		}
		service, err := approval.NewService(newStore, &settings)
		if err != nil {
			return nil, fmt.Errorf("starting the approval store: %w", err)
		}
		return sharedApprovals{Service: service, instance: r.instance}, nil
	})
	if err != nil {
		return nil, err
	}
	service := value.(sharedApprovals).Service
	if loaded {
		if err := service.Configure(&settings); err != nil {
			releaseApprovals(r.poolKey())
			return nil, err
		}
	}
	return service, nil
}

func releaseApprovals(key string) {
	_, _ = approvalServices.Delete(key)
}

// eachApprovalService calls f for every approval service in use whose
// instance is named instance (any, when instance is empty).
func eachApprovalService(instance string, f func(*approval.Service) bool) {
	approvalServices.Range(func(_, value any) bool {
		shared := value.(sharedApprovals)
		if instance != "" && shared.instance != instance {
			return true
		}
		return f(shared.Service)
	})
}

// approvalServiceFor returns the approval service (of the instance, or
// any when instance is empty) whose store knows approval id, that owns it
// (one of its decision secrets announced it), and which accept, when
// given, accepts; nil when there is none.
func approvalServiceFor(ctx context.Context, instance, id string, accept func(*approval.Service) bool) *approval.Service {
	if !approval.ValidID(id) {
		return nil
	}
	var found *approval.Service
	eachApprovalService(instance, func(s *approval.Service) bool {
		if accept != nil && !accept(s) {
			return true
		}
		if a, err := s.Get(ctx, id); err == nil && s.Owns(a) {
			found = s
		}
		return found == nil
	})
	return found
}

// newApprovalMetrics registers (or finds) the approval metrics in the
// config's registry, for one instance.
func newApprovalMetrics(registry prometheus.Registerer, instance string) (*approval.Metrics, error) {
	pending, err := registerOrReuse(registry, prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: "mcpgate",
		Name:      "pending_approvals",
		Help:      "Approvals waiting for a decision, in the store of each approval instance.",
	}, []string{"instance"}))
	if err != nil {
		return nil, err
	}
	wait, err := registerOrReuse(registry, prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: "mcpgate",
		Name:      "approval_wait_seconds",
		Help:      "How long approvals waited before they were approved, denied, cancelled or expired.",
		Buckets:   []float64{1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600},
	}, []string{"instance", "outcome"}))
	if err != nil {
		return nil, err
	}
	curried, err := wait.CurryWith(prometheus.Labels{"instance": instance})
	if err != nil {
		return nil, fmt.Errorf("registering metrics: %w", err)
	}
	return &approval.Metrics{Pending: pending.WithLabelValues(instance), Wait: curried}, nil
}
