package caddymodule

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/caddyserver/caddy/v2"

	"github.com/mcpgate/mcpgate/caddymodule/catalog"
)

// catalogs holds one tool catalog per pins file. It lives outside any one
// config, so what the gateway knows of upstream tools, and which changed
// definitions await acceptance, survives config reloads.
var catalogs = caddy.NewUsagePool()

// sharedCatalog wraps a catalog for the usage pool.
type sharedCatalog struct {
	*catalog.Catalog
}

// Destruct implements caddy.Destructor; pins are saved as they change, so
// there is nothing to flush.
func (sharedCatalog) Destruct() error { return nil }

// defaultPinsFile is where pins live when pins_file is not set.
func defaultPinsFile() string {
	return filepath.Join(caddy.AppDataDir(), "mcpgate", "pins.json")
}

// loadCatalog returns the catalog kept in pinsFile, loading it on first use.
// Each call must be matched by releaseCatalog.
func loadCatalog(ctx context.Context, pinsFile string) (*catalog.Catalog, error) {
	value, _, err := catalogs.LoadOrNew(pinsFile, func() (caddy.Destructor, error) {
		c, err := catalog.New(ctx, catalog.NewFilePinStore(pinsFile))
		if err != nil {
			return nil, fmt.Errorf("loading tool pins from %s: %w", pinsFile, err)
		}
		return sharedCatalog{c}, nil
	})
	if err != nil {
		return nil, err
	}
	return value.(sharedCatalog).Catalog, nil
}

func releaseCatalog(pinsFile string) {
	_, _ = catalogs.Delete(pinsFile)
}

// eachCatalog calls f for every catalog in use, for the admin API.
func eachCatalog(f func(*catalog.Catalog) bool) {
	catalogs.Range(func(_, value any) bool {
		return f(value.(sharedCatalog).Catalog)
	})
}
