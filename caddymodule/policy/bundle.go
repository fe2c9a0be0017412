package policy

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/logging"
	"github.com/open-policy-agent/opa/v1/plugins"
	bundleplugin "github.com/open-policy-agent/opa/v1/plugins/bundle"
	"github.com/open-policy-agent/opa/v1/storage"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
	"go.uber.org/zap"
)

// Defaults for BundleConfig.
const (
	DefaultBundleMinDelay          = 10 * time.Second
	DefaultBundleMaxDelay          = 20 * time.Second
	DefaultBundleActivationTimeout = 30 * time.Second
	// DefaultBundleDownloadTimeout bounds one download, from the request
	// to the last byte of the bundle.
	DefaultBundleDownloadTimeout = 30 * time.Second
	// DefaultBundleMaxSize bounds a bundle in bytes, compressed and
	// uncompressed (the sum of its files and the archive's own headers).
	DefaultBundleMaxSize = 16 << 20
)

// bundleName names the one bundle (and its service) in the OPA
// configuration the engine builds.
const bundleName = "mcpgate"

// BundleConfig says where to poll for an OPA bundle. The bundle is
// downloaded and activated by OPA's own bundle plugin, which compiles it
// alone; the engine then compiles the activated bundle's modules and data
// with Options.Modules and Options.Data. So a bundle may refer to rules and
// data those give, but not call functions they define. Bundles must be
// Rego v1, OPA 1.x's default.
type BundleConfig struct {
	// URL is the bundle service's base URL, e.g. https://bundles.example.com.
	URL string
	// Resource is the bundle's path on the service, e.g. bundles/mcp.tar.gz.
	Resource string
	// Token, when set, is sent as a bearer token.
	Token string
	// MinDelay and MaxDelay bound the wait between polls (OPA picks a
	// random delay in between). OPA counts them in whole seconds: each is
	// rounded up to one, and the least is one second. Defaults are
	// DefaultBundleMinDelay and DefaultBundleMaxDelay.
	MinDelay, MaxDelay time.Duration
	// ActivationTimeout bounds how long New waits for the first bundle
	// when its context has no deadline; DefaultBundleActivationTimeout
	// when zero.
	ActivationTimeout time.Duration
	// DownloadTimeout bounds one download, the bundle's last byte
	// included (a download that takes longer fails, and the polling goes
	// on); DefaultBundleDownloadTimeout when zero.
	DownloadTimeout time.Duration
	// MaxSize bounds the bundle in bytes, compressed and once
	// decompressed (a larger one fails, unread by OPA);
	// DefaultBundleMaxSize when zero.
	MaxSize int64
	// Verification, when set, activates only bundles signed with its key
	// (OPA's bundle signatures: a .signatures.json whose JWT names the
	// key and covers every file): an unsigned bundle, or one whose files
	// or signature do not match, is refused, and the previous one stays
	// in force. Without it, whoever can change what the bundle server
	// answers (or what reaches the gateway from it) changes the policy.
	Verification *BundleVerification
}

// BundleVerification is the key a bundle's signature must verify with.
type BundleVerification struct {
	// KeyID names the key in OPA's configuration; OPA checks a bundle's
	// signature with this key whatever key id the bundle names.
	KeyID string
	// Key is the public key in PEM (RSA or ECDSA), or the shared secret
	// for the HS algorithms.
	Key string
	// Algorithm is the signature's algorithm: RS256 (the default), RS384,
	// RS512, PS256, PS384, PS512, ES256, ES384, ES512, HS256, HS384 or
	// HS512.
	Algorithm string
	// Scope, when set, is the scope the signature must carry.
	Scope string
}

// bundleAlgorithms are the signature algorithms OPA verifies bundles with.
var bundleAlgorithms = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "HS256", "HS384", "HS512"}

// policyBundle runs OPA's bundle plugin and rebuilds the engine's policy
// each time it activates a bundle.
type policyBundle struct {
	engine  *Engine
	ctx     context.Context
	manager *plugins.Manager
	// location is the bundle's URL, for logs and errors.
	location string

	// lastActivation is the activation the policy in force was built from;
	// only the plugin's status listener, which OPA calls serially, uses it.
	lastActivation time.Time
	// active is closed once a bundle has been activated and built.
	active chan struct{}

	mu      sync.Mutex
	lastErr error
}

// startBundle starts polling and waits for the first activation. ctx bounds
// the wait; background is the context of the rebuilds.
func startBundle(ctx, background context.Context, e *Engine, cfg *BundleConfig) (*policyBundle, error) {
	config, err := pluginConfig(cfg)
	if err != nil {
		return nil, err
	}
	downloads := &bundleDownloads{token: cfg.Token, timeout: cmp.Or(cfg.DownloadTimeout, DefaultBundleDownloadTimeout),
		maxSize: cmp.Or(cfg.MaxSize, DefaultBundleMaxSize)}
	// OPA's own log lines are printf-style; the engine logs each outcome
	// with fields instead, from the plugin's status.
	quiet := logging.NewNoOpLogger()
	manager, err := plugins.New(config, bundleName, &compileTurns{Store: inmem.New()}, plugins.Logger(quiet), plugins.ConsoleLogger(quiet))
	if err != nil {
		return nil, fmt.Errorf("configuring policy bundle: %w", err)
	}
	location := strings.TrimSuffix(cfg.URL, "/") + "/" + strings.TrimPrefix(cfg.Resource, "/")
	b := &policyBundle{engine: e, ctx: background, manager: manager, location: location, active: make(chan struct{})}
	parsed, err := bundleplugin.NewConfigBuilder().
		WithBytes(manager.Config.Bundles).
		WithServices(manager.Services()).
		WithKeyConfigs(manager.PublicKeys()).
		Parse()
	if err != nil {
		b.stop()
		return nil, fmt.Errorf("configuring policy bundle: %w", err)
	}
	manager.Register(downloadsPluginName, downloads)
	plugin := bundleplugin.New(parsed, manager)
	plugin.Register(bundleName, b.statusChanged)
	manager.Register(bundleplugin.Name, plugin)
	if err := manager.Start(ctx); err != nil {
		b.stop()
		return nil, fmt.Errorf("starting policy bundle: %w", err)
	}

	wait := ctx
	if _, ok := ctx.Deadline(); !ok {
		timeout := cfg.ActivationTimeout
		if timeout <= 0 {
			timeout = DefaultBundleActivationTimeout
		}
		var cancel context.CancelFunc
		wait, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	select {
	case <-b.active:
		return b, nil
	case <-wait.Done():
		// The last failure explains more than the deadline does; it is
		// read before stopping, which fails the download in progress.
		b.mu.Lock()
		last := b.lastErr
		b.mu.Unlock()
		b.stop()
		if last == nil {
			last = wait.Err()
		}
		return nil, fmt.Errorf("no policy bundle activated from %s: %w", location, last)
	}
}

// pluginConfig is the OPA configuration for one bundle from one service.
func pluginConfig(cfg *BundleConfig) ([]byte, error) {
	if cfg.URL == "" || cfg.Resource == "" {
		return nil, errors.New("a policy bundle needs a service URL and a resource")
	}
	minDelay, maxDelay := cfg.MinDelay, cfg.MaxDelay
	if minDelay < 0 || maxDelay < 0 {
		return nil, fmt.Errorf("policy bundle polling: delays must not be negative (min %s, max %s); zero means the default", minDelay, maxDelay)
	}
	if minDelay == 0 {
		minDelay = DefaultBundleMinDelay
	}
	if maxDelay == 0 {
		maxDelay = max(DefaultBundleMaxDelay, minDelay)
	}
	if maxDelay < minDelay {
		return nil, fmt.Errorf("policy bundle polling: max delay %s is less than min delay %s", maxDelay, minDelay)
	}
	if cfg.DownloadTimeout < 0 || cfg.MaxSize < 0 {
		return nil, fmt.Errorf("policy bundle: the download timeout (%s) and the max size (%d) must not be negative; zero means the default", cfg.DownloadTimeout, cfg.MaxSize)
	}
	// The service's HTTP client, with the token, is bundleDownloads'.
	service := map[string]any{"url": cfg.URL, "credentials": map[string]any{"plugin": downloadsPluginName}}
	source := map[string]any{
		"service":  bundleName,
		"resource": cfg.Resource,
		// Each file's bound, as OPA reads it (bundleDownloads bounds the
		// whole first).
		"size_limit_bytes": cmp.Or(cfg.MaxSize, DefaultBundleMaxSize),
		"polling": map[string]any{
			"min_delay_seconds": wholeSeconds(minDelay),
			"max_delay_seconds": wholeSeconds(maxDelay),
		},
	}
	config := map[string]any{
		"services": map[string]any{bundleName: service},
		"bundles":  map[string]any{bundleName: source},
	}
	if v := cfg.Verification; v != nil {
		algorithm := v.Algorithm
		if algorithm == "" {
			algorithm = "RS256"
		}
		switch {
		case v.KeyID == "" || strings.TrimSpace(v.Key) == "":
			return nil, errors.New("policy bundle verification needs a key id and a key")
		case !slices.Contains(bundleAlgorithms, algorithm):
			return nil, fmt.Errorf("policy bundle verification: unknown algorithm %q (want one of %s)", algorithm, strings.Join(bundleAlgorithms, ", "))
		}
		key := map[string]any{"key": v.Key, "algorithm": algorithm}
		signing := map[string]any{"keyid": v.KeyID}
		if v.Scope != "" {
			key["scope"], signing["scope"] = v.Scope, v.Scope
		}
		config["keys"] = map[string]any{v.KeyID: key}
		source["signing"] = signing
	}
	raw, err := json.Marshal(config)
	if err != nil {
		return nil, fmt.Errorf("configuring policy bundle: %w", err)
	}
	return raw, nil
}

// wholeSeconds rounds d up to whole seconds, for OPA's polling settings.
func wholeSeconds(d time.Duration) int64 {
	return int64(math.Ceil(d.Seconds()))
}

// statusChanged is the bundle plugin's status listener, called after every
// download attempt. A new activation is compiled with the gateway's modules
// and data; if that fails, the previous policy stays in force.
func (b *policyBundle) statusChanged(status bundleplugin.Status) {
	logger := b.engine.logger.With(zap.String("bundle", b.location), zap.String("revision", status.ActiveRevision))
	if status.Code != "" {
		err := errors.New(status.Message)
		if len(status.Errors) > 0 {
			err = fmt.Errorf("%s: %w", status.Message, errors.Join(status.Errors...))
		}
		b.failed(err)
		b.reloaded(err)
		logger.Error("policy bundle failed; keeping the previous policy", zap.Error(err))
		return
	}
	if status.LastSuccessfulActivation.IsZero() || status.LastSuccessfulActivation.Equal(b.lastActivation) {
		return
	}
	b.lastActivation = status.LastSuccessfulActivation
	queries, err := b.build()
	if err != nil {
		b.failed(err)
		b.reloaded(err)
		logger.Error("policy bundle rejected; keeping the previous policy", zap.Error(err))
		return
	}
	b.engine.install(queries, b.location)
	select {
	case <-b.active:
		b.reloaded(nil)
		logger.Info("policy reloaded")
	default:
		close(b.active)
	}
}

// reloaded tells Options.OnReload how a reload went, once a first
// bundle is active (before, New reports failures).
func (b *policyBundle) reloaded(err error) {
	select {
	case <-b.active:
		b.engine.reloaded(err)
	default:
	}
}

// failed records err for New to report if no bundle ever activates.
func (b *policyBundle) failed(err error) {
	b.mu.Lock()
	b.lastErr = err
	b.mu.Unlock()
}

// build compiles the modules and data of the activated bundle, as the
// plugin stored them, with the gateway's own.
func (b *policyBundle) build() (*preparedQueries, error) {
	store := b.manager.Store
	var queries *preparedQueries
	err := storage.Txn(b.ctx, store, storage.TransactionParams{}, func(txn storage.Transaction) error {
		ids, err := store.ListPolicies(b.ctx, txn)
		if err != nil {
			return fmt.Errorf("reading bundle policies: %w", err)
		}
		modules := make(map[string]*ast.Module, len(ids))
		for _, id := range ids {
			source, err := store.GetPolicy(b.ctx, txn, id)
			if err != nil {
				return fmt.Errorf("reading bundle policy %s: %w", id, err)
			}
			if modules[id], err = ast.ParseModuleWithOpts(id, string(source), b.manager.ParserOptions()); err != nil {
				return fmt.Errorf("parsing bundle policy %s: %w", id, err)
			}
		}
		value, err := store.Read(b.ctx, txn, storage.RootPath)
		if err != nil {
			return fmt.Errorf("reading bundle data: %w", err)
		}
		data, ok := value.(map[string]any)
		if !ok {
			return fmt.Errorf("bundle data is %s, want an object", jsonKind(value))
		}
		queries, err = b.engine.builder.build(b.ctx, modules, withoutETags(data), "the bundle "+b.location)
		return err
	})
	return queries, err
}

// withoutETags returns data without the ETags OPA's bundle plugin records
// under system.bundles (data.system.bundles.<name>.etag): an HTTP detail
// of the server a bundle came from, not the policy, which would give one
// bundle as many revisions (Engine.Revision) as the servers or uploads
// that serve it have ETags. data is the store's, and is not changed: what
// is on the way to an ETag is copied.
func withoutETags(data map[string]any) map[string]any {
	system, _ := data["system"].(map[string]any)
	bundles, _ := system["bundles"].(map[string]any)
	if len(bundles) == 0 {
		return data
	}
	strippedBundles := make(map[string]any, len(bundles))
	for name, value := range bundles {
		if entry, ok := value.(map[string]any); ok {
			if _, has := entry["etag"]; has {
				entry = maps.Clone(entry)
				delete(entry, "etag")
			}
			value = entry
		}
		strippedBundles[name] = value
	}
	strippedSystem := maps.Clone(system)
	strippedSystem["bundles"] = strippedBundles
	stripped := maps.Clone(data)
	stripped["system"] = strippedSystem
	return stripped
}

// stop stops polling.
func (b *policyBundle) stop() {
	b.manager.Stop(context.Background())
}

// compileTurns is the store of OPA's bundle plugin, whose write
// transactions take the compiling turn (see compiling): the plugin
// compiles each bundle it activates inside one, with OPA's type checker,
// which writes into the types built-ins declare. The turn is taken once
// the transaction is open, and given back before it commits: a policy
// built from the bundle reads this store, then takes the turn, and a
// commit waits for the store's readers.
type compileTurns struct {
	storage.Store

	mu sync.Mutex
	// turn is the write transaction holding the turn (the store has one
	// writer at a time).
	turn storage.Transaction
}

// NewTransaction opens a transaction; a write transaction takes the turn.
func (s *compileTurns) NewTransaction(ctx context.Context, params ...storage.TransactionParams) (storage.Transaction, error) {
	txn, err := s.Store.NewTransaction(ctx, params...)
	if err != nil || len(params) == 0 || !params[0].Write {
		return txn, err
	}
	compiling.Lock()
	s.mu.Lock()
	s.turn = txn
	s.mu.Unlock()
	return txn, nil
}

// Commit gives the turn back, then commits.
func (s *compileTurns) Commit(ctx context.Context, txn storage.Transaction) error {
	s.giveTurnBack(txn)
	return s.Store.Commit(ctx, txn)
}

// Abort gives the turn back, then aborts.
func (s *compileTurns) Abort(ctx context.Context, txn storage.Transaction) {
	s.giveTurnBack(txn)
	s.Store.Abort(ctx, txn)
}

// giveTurnBack gives the turn back if txn holds it.
func (s *compileTurns) giveTurnBack(txn storage.Transaction) {
	s.mu.Lock()
	holds := s.turn != nil && s.turn == txn
	if holds {
		s.turn = nil
	}
	s.mu.Unlock()
	if holds {
		compiling.Unlock()
	}
}
