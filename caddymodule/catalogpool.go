package caddymodule

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/caddyserver/caddy/v2"
	"github.com/redis/go-redis/v9"

	"github.com/mcpgate/mcpgate/caddymodule/approval"
	"github.com/mcpgate/mcpgate/caddymodule/catalog"
)

// catalogs holds one tool catalog per pins file. It lives outside any one
// config, so what the gateway knows of upstream tools, and which changed
// definitions await acceptance, survives config reloads.
var catalogs = caddy.NewUsagePool()

// sharedCatalog wraps a catalog for the usage pool.
type sharedCatalog struct {
	*catalog.Catalog
	redis *redis.Client
}

// Destruct implements caddy.Destructor: pins are saved as they change, so
// only a Redis connection is left to close.
func (c sharedCatalog) Destruct() error {
	if c.redis != nil {
		return c.redis.Close()
	}
	return nil
}

// pinSource says where a catalog keeps its pins: a file, or (when the
// approval store is Redis) the same Redis, so that replicas share them.
type pinSource struct {
	file  string
	redis string
}

func (p pinSource) key() string {
	if p.redis != "" {
		return "redis:" + p.redis
	}
	return "file:" + p.file
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
		opts, err := approval.RedisOptions(source.redis)
		if err != nil {
			return nil, err
		}
		client := redis.NewClient(opts)
		c, err := catalog.New(ctx, catalog.NewRedisPinStore(client, "mcpgate:pins:"))
		if err != nil {
			client.Close()
			return nil, fmt.Errorf("loading tool pins from Redis: %w", err)
		}
		return sharedCatalog{Catalog: c, redis: client}, nil
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
