package caddymodule

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"path/filepath"

	"github.com/caddyserver/caddy/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/mcpgate/mcpgate/caddymodule/approval"
	"github.com/mcpgate/mcpgate/caddymodule/catalog"
	"github.com/mcpgate/mcpgate/caddymodule/gateway"
	"github.com/mcpgate/mcpgate/caddymodule/ratelimit"
	"github.com/mcpgate/mcpgate/caddymodule/sessiontoken"
)

// This file holds the state that outlives a configuration: the approval
// services (pending approvals and the calls held on them), the tool
// catalogs (with their pins) and what the gateways remember of live
// sessions. Each lives in a caddy.UsagePool, so a config reload hands it
// on to the next configuration, and it is released when no configuration
// uses it any more.

// redisClients holds one Redis client (its pool of connections) per
// address, as written once placeholders are replaced: the approval
// services, the pin stores and the shared rate limits that name it share
// it, across configurations.
var redisClients = caddy.NewUsagePool()

// sharedRedis wraps a Redis client for the usage pool.
type sharedRedis struct {
	*redis.Client
}

// Destruct implements caddy.Destructor: it closes the client once nothing
// uses it.
func (c sharedRedis) Destruct() error {
	return c.Close()
}

// loadRedis returns the client of the Redis at address, making it on first
// use; release gives it back.
func loadRedis(address string) (client *redis.Client, release func(), err error) {
	value, _, err := redisClients.LoadOrNew(address, func() (caddy.Destructor, error) {
		opts, err := approval.RedisOptions(address)
		if err != nil {
			return nil, err
		}
		return sharedRedis{redis.NewClient(opts)}, nil
	})
	if err != nil {
		return nil, nil, err
	}
	return value.(sharedRedis).Client, func() { _, _ = redisClients.Delete(address) }, nil
}

// approvalServices holds one approval service per store and instance. It
// lives outside any one config, so pending approvals (and the calls held
// on them) survive config reloads; only the settings follow the newest
// config.
var approvalServices = caddy.NewUsagePool()

// sharedApprovals wraps an approval service for the usage pool.
type sharedApprovals struct {
	*approval.Service
	instance string
	// releaseRedis gives back the Redis client of a Redis store.
	releaseRedis func()
}

// Destruct implements caddy.Destructor: it stops webhook deliveries and
// closes the store once no config uses the service.
func (s sharedApprovals) Destruct() error {
	err := s.Close()
	if s.releaseRedis != nil {
		s.releaseRedis()
	}
	return err
}

// loadApprovals returns the service for the handler's approval config,
// starting it on first use, and gives it the config's settings. Each call
// must be matched by releaseApprovals with the same key.
func loadApprovals(ctx caddy.Context, r *resolvedApproval, audit *zap.Logger) (*approval.Service, error) {
	metrics, err := newApprovalMetrics(ctx.GetMetricsRegistry(), r.instance)
	if err != nil {
		return nil, err
	}
	settings := r.settings
	settings.Logger = ctx.Logger().Named("approvals")
	settings.Audit = audit
	settings.Metrics = metrics
	value, loaded, err := approvalServices.LoadOrNew(r.poolKey(), func() (caddy.Destructor, error) {
		newStore := func(onChange approval.ChangeFunc) (approval.Store, error) {
			return approval.NewMemoryStore(onChange), nil
		}
		var releaseRedis func()
		if r.store == storeRedis {
			client, release, err := loadRedis(r.redis)
			if err != nil {
				return nil, err
			}
			releaseRedis = release
			newStore = func(onChange approval.ChangeFunc) (approval.Store, error) {
				instance := r.instance
				if instance == defaultApprovalInstance {
					// The default instance keeps the keys it always had.
					instance = ""
				}
				return approval.NewRedisStoreOn(client, r.redis, instance, onChange)
			}
		}
		service, err := approval.NewService(newStore, &settings)
		if err != nil {
			if releaseRedis != nil {
				releaseRedis()
			}
			return nil, fmt.Errorf("starting the approval store: %w", err)
		}
		return sharedApprovals{Service: service, instance: r.instance, releaseRedis: releaseRedis}, nil
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

// newApprovalMetrics registers (or finds) the approval metrics in the
// config's registry, for one instance.
func newApprovalMetrics(registry prometheus.Registerer, instance string) (*approval.Metrics, error) {
	pending, err := gateway.RegisterOrReuse(registry, prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: "mcpgate",
		Name:      "pending_approvals",
		Help:      "Approvals waiting for a decision, in the store of each approval instance.",
	}, []string{"instance"}))
	if err != nil {
		return nil, err
	}
	wait, err := gateway.RegisterOrReuse(registry, prometheus.NewHistogramVec(prometheus.HistogramOpts{
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

// catalogs holds one tool catalog per pins file. It lives outside any one
// config, so what the gateway knows of upstream tools, and which changed
// definitions await acceptance, survives config reloads.
var catalogs = caddy.NewUsagePool()

// sharedCatalog wraps a catalog for the usage pool.
type sharedCatalog struct {
	*catalog.Catalog
	// releaseRedis gives back the Redis client of a Redis pin store.
	releaseRedis func()
}

// Destruct implements caddy.Destructor: pins are saved as they change, so
// only a Redis client is left to give back.
func (c sharedCatalog) Destruct() error {
	if c.releaseRedis != nil {
		c.releaseRedis()
	}
	return nil
}

// pinSource says where a catalog keeps its pins: a file, or (when the
// approval store is Redis) the same Redis, so that replicas share them.
type pinSource struct {
	file  string
	redis string
	// instance is the approval instance whose Redis keeps the pins: each
	// keeps its own (the default one under the keys it always had).
	instance string
}

func (p pinSource) key() string {
	if p.redis != "" {
		return "redis:" + p.redis + "|" + p.instance
	}
	return "file:" + p.file
}

// sharedPinsPrefix is where the default approval instance keeps its pins
// in Redis, as every instance did before each kept its own.
const sharedPinsPrefix = "mcpgate:pins:"

// redisPins is the pin store of the source's instance in client: under
// the shared prefix for the default instance; else under the instance's
// own ("mcpgate:{<instance>}:pins:", as its approvals are), starting
// from the shared pins when it has none yet.
func (p pinSource) redisPins(client *redis.Client) *catalog.RedisPinStore {
	if p.instance == defaultApprovalInstance {
		return catalog.NewRedisPinStore(client, sharedPinsPrefix)
	}
	return catalog.NewRedisPinStore(client, "mcpgate:{"+url.QueryEscape(p.instance)+"}:pins:").Inherit(sharedPinsPrefix)
}

// defaultPinsFile is where pins live when pins_file is not set.
func defaultPinsFile() string {
	return filepath.Join(caddy.AppDataDir(), "mcpgate", "pins.json")
}

// loadCatalog returns the catalog whose pins are kept in source, loading
// it on first use. Each call must be matched by releaseCatalog.
func loadCatalog(ctx context.Context, source pinSource) (*catalog.Catalog, error) {
	value, _, err := catalogs.LoadOrNew(source.key(), func() (caddy.Destructor, error) {
		if source.redis == "" {
			c, err := catalog.New(ctx, catalog.NewFilePinStore(source.file))
			if err != nil {
				return nil, fmt.Errorf("loading tool pins from %s: %w", source.file, err)
			}
			return sharedCatalog{Catalog: c}, nil
		}
		client, release, err := loadRedis(source.redis)
		if err != nil {
			return nil, err
		}
		c, err := catalog.New(ctx, source.redisPins(client))
		if err != nil {
			release()
			return nil, fmt.Errorf("loading tool pins from Redis: %w", err)
		}
		return sharedCatalog{Catalog: c, releaseRedis: release}, nil
	})
	if err != nil {
		return nil, err
	}
	return value.(sharedCatalog).Catalog, nil
}

func releaseCatalog(source pinSource) {
	_, _ = catalogs.Delete(source.key())
}

// eachCatalog calls f for every catalog in use, for the admin API.
func eachCatalog(f func(*catalog.Catalog) bool) {
	catalogs.Range(func(_, value any) bool {
		return f(value.(sharedCatalog).Catalog)
	})
}

// sessionStates holds what the gateways remember of live sessions. It is
// shared by every mcp_policy handler and outlives config reloads, so that a
// stream opened under one config is still governed under the next.
var sessionStates = caddy.NewUsagePool()

// sessionStateKey is the one entry of sessionStates.
const sessionStateKey = "mcpgate/sessions"

// sharedSessions wraps the session state for the usage pool.
type sharedSessions struct {
	*gateway.Sessions
}

// Destruct implements caddy.Destructor: open streams end with their
// requests, so there is nothing to release.
func (sharedSessions) Destruct() error { return nil }

// loadSessions returns the shared session state; each call must be
// matched by releaseSessions.
func loadSessions() *gateway.Sessions {
	value, _, _ := sessionStates.LoadOrNew(sessionStateKey, func() (caddy.Destructor, error) {
		return sharedSessions{gateway.NewSessions()}, nil
	})
	return value.(sharedSessions).Sessions
}

func releaseSessions() {
	_, _ = sessionStates.Delete(sessionStateKey)
}

// sessionKeyPath is where, in Caddy's storage, the session key lives when
// none is configured.
const sessionKeyPath = "mcpgate/session.key"

// keyStorage is what the session key needs of Caddy's storage
// (certmagic.Storage).
type keyStorage interface {
	Load(ctx context.Context, key string) ([]byte, error)
	Store(ctx context.Context, key string, value []byte) error
	Lock(ctx context.Context, name string) error
	Unlock(ctx context.Context, name string) error
}

// storedSessionKey returns the session key kept in storage (Caddy's),
// making it on first use. Replicas that share storage share the key.
func storedSessionKey(ctx context.Context, storage keyStorage) ([]byte, error) {
	// load returns the stored key, or found false when there is none yet.
	// Any other failure is an error: a key made in its place would
	// overwrite the one replicas share, and every session they sealed
	// would end.
	load := func() (key []byte, found bool, err error) {
		encoded, err := storage.Load(ctx, sessionKeyPath)
		if errors.Is(err, fs.ErrNotExist) {
			return nil, false, nil
		}
		if err != nil {
			return nil, false, fmt.Errorf("loading the session key from Caddy's storage (%s): %w", sessionKeyPath, err)
		}
		if key, err = sessiontoken.ParseKey(string(encoded)); err != nil {
			return nil, false, fmt.Errorf("the session key in Caddy's storage (%s): %w", sessionKeyPath, err)
		}
		return key, true, nil
	}
	if key, found, err := load(); err != nil || found {
		return key, err
	}
	if err := storage.Lock(ctx, sessionKeyPath); err != nil {
		return nil, fmt.Errorf("locking the session key: %w", err)
	}
	defer func() { _ = storage.Unlock(ctx, sessionKeyPath) }()
	if key, found, err := load(); err != nil || found {
		return key, err
	}
	key := sessiontoken.NewKey()
	if err := storage.Store(ctx, sessionKeyPath, []byte(base64.StdEncoding.EncodeToString(key))); err != nil {
		return nil, fmt.Errorf("storing the session key: %w", err)
	}
	return key, nil
}

// localLimits holds the rate limit counts of this process, one store for
// each limit of each upstream (see rateLimits), kept across reloads.
var localLimits = caddy.NewUsagePool()

// sharedLimiter wraps one limit's counts for the usage pool.
type sharedLimiter struct {
	*ratelimit.Local
}

// Destruct implements caddy.Destructor; counts live in memory only.
func (sharedLimiter) Destruct() error { return nil }

// loadLocalLimiter returns the counts the process keeps for one limit,
// named by key; each call must be matched by releaseLocalLimiter with the
// same key.
func loadLocalLimiter(key string) (*ratelimit.Local, error) {
	value, _, err := localLimits.LoadOrNew(key, func() (caddy.Destructor, error) {
		local, err := ratelimit.NewLocal(ratelimit.LocalConfig{})
		if err != nil {
			return nil, fmt.Errorf("starting rate limits: %w", err)
		}
		return sharedLimiter{local}, nil
	})
	if err != nil {
		return nil, err
	}
	return value.(sharedLimiter).Local, nil
}

func releaseLocalLimiter(key string) {
	_, _ = localLimits.Delete(key)
}
