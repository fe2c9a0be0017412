package approval

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// redisStore keeps approvals in Redis, shared by every gateway that uses
// the same Redis, and tells them all of every change by pub/sub.
//
// Keys (prefix "mcpgate:", or "mcpgate:{<instance>}:" for a named
// instance, so that instances sharing one Redis share nothing: neither
// approvals, nor bindings, nor their sweeps):
//
//	approval:<id>          the approval, JSON; expires when it may be forgotten
//	approval-binding:<k>/<h>  the id of the approval that stands for binding h
//	                       under the decision secret whose id is k (see bindingKey)
//	approvals:pending      sorted set of pending ids, by expiry (ms)
//	approvals:all          sorted set of every id, by when it may be forgotten
//	webhook-id:<key>       one-time keys claimed (Claim: callers' confirmation
//	                       nonces); the name is kept from when callbacks'
//	                       webhook-ids were kept here, so that replicas of
//	                       either version share the claims
//
// and the channel "mcpgate:approvals", which carries the id of each
// approval created or changed. Changes are optimistic transactions
// (WATCH/MULTI), so the rules stay in Go, in one place. A single Redis
// (or a primary with replicas) is assumed, not a Redis Cluster.
type redisStore struct {
	client *redis.Client
	// ownsClient is set when the store made its client, and closes it.
	ownsClient bool
	prefix     string
	// scope is the store's Scope: the database and the prefix.
	scope    string
	pubsub   *redis.PubSub
	stop     context.CancelFunc
	listener sync.WaitGroup
}

// maxTxAttempts bounds the retries of an optimistic transaction that other
// gateways keep changing under it.
const maxTxAttempts = 32

// RedisOptions reads a Redis address: host:port, or a redis:// or
// rediss:// URL (with user, password and database).
func RedisOptions(address string) (*redis.Options, error) {
	if !strings.Contains(address, "://") {
		// go-redis would take an empty host, or an empty address (a
		// placeholder that named nothing), for localhost.
		host, port, err := net.SplitHostPort(address)
		if err != nil || strings.TrimSpace(host) == "" || !validPort(port) {
			return nil, fmt.Errorf("redis address %q: want host:port, or a redis:// or rediss:// URL", address)
		}
		return &redis.Options{Addr: address}, nil
	}
	// Errors name the address without its password, which a
	// configuration error would otherwise write to the log (url.Parse's
	// own errors quote the whole URL).
	u, err := url.Parse(address)
	if err != nil {
		var urlErr *url.Error
		if errors.As(err, &urlErr) {
			err = urlErr.Err
		}
		return nil, fmt.Errorf("redis address: not a URL: %w", err)
	}
	if u.Scheme != "unix" && (strings.TrimSpace(u.Hostname()) == "" || u.Port() != "" && !validPort(u.Port())) {
		return nil, fmt.Errorf("redis address %q: names no host, or a port that is not one", u.Redacted())
	}
	opts, err := redis.ParseURL(address)
	if err != nil {
		return nil, fmt.Errorf("redis address %q: %w", u.Redacted(), err)
	}
	return opts, nil
}

// validPort reports whether port is a TCP port number, 1 to 65535.
func validPort(port string) bool {
	n, err := strconv.Atoi(port)
	return err == nil && n >= 1 && n <= 65535 && strconv.Itoa(n) == port
}

// RedisDatabase names the Redis database an address reaches (see
// RedisOptions), so that two spellings of one address compare alike: the
// network, the host (in lower case) and port, the user and the database.
// connection names how the address connects to it: with TLS or not, and
// which password (hashed), which two spellings of one database may not
// disagree on.
func RedisDatabase(address string) (database, connection string, err error) {
	opts, err := RedisOptions(address)
	if err != nil {
		return "", "", err
	}
	network := opts.Network
	if network == "" {
		network = "tcp"
	}
	password := sha256.Sum256([]byte(opts.Password))
	return fmt.Sprintf("%s %s user %q db %d", network, strings.ToLower(opts.Addr), opts.Username, opts.DB),
		fmt.Sprintf("tls %v password %x", opts.TLSConfig != nil, password[:8]), nil
}

// NewRedisStore returns a store in the Redis at address, either host:port
// or a redis:// or rediss:// URL (with user, password and database), for
// the approval service named instance ("" for the default one). Every
// change any gateway makes there to the instance's approvals reaches
// onChange.
func NewRedisStore(address, instance string, onChange ChangeFunc) (Store, error) {
	opts, err := RedisOptions(address)
	if err != nil {
		return nil, err
	}
	s, err := NewRedisStoreOn(redis.NewClient(opts), address, instance, onChange)
	if err != nil {
		return nil, err
	}
	s.(*redisStore).ownsClient = true
	return s, nil
}

// NewRedisStoreOn is NewRedisStore over a client of the caller's, which
// the store uses but does not close: address is the one the client
// reaches, which names the store's scope.
func NewRedisStoreOn(client *redis.Client, address, instance string, onChange ChangeFunc) (Store, error) {
	prefix := "mcpgate:"
	if instance != "" {
		prefix += "{" + url.QueryEscape(instance) + "}:"
	}
	database, _, err := RedisDatabase(address)
	if err != nil {
		return nil, err
	}
	s := &redisStore{client: client, prefix: prefix, scope: "redis " + database + " " + prefix}
	ctx, stop := context.WithCancel(context.Background())
	s.stop = stop
	s.pubsub = s.client.Subscribe(ctx, s.channel())
	messages := s.pubsub.Channel()
	s.listener.Go(func() {
		for {
			select {
			case <-ctx.Done():
				return
			case m, ok := <-messages:
				if !ok {
					return
				}
				onChange(m.Payload)
			}
		}
	})
	return s, nil
}

func (s *redisStore) recordKey(id string) string { return s.prefix + "approval:" + id }
func (s *redisStore) bindingKey(key string) string {
	return s.prefix + "approval-binding:" + key
}
func (s *redisStore) pendingKey() string         { return s.prefix + "approvals:pending" }
func (s *redisStore) allKey() string             { return s.prefix + "approvals:all" }
func (s *redisStore) claimKey(key string) string { return s.prefix + "webhook-id:" + key }
func (s *redisStore) channel() string            { return s.prefix + "approvals" }

// get reads one approval through c (the client or a transaction).
func (s *redisStore) get(ctx context.Context, c redis.Cmdable, id string) (*Approval, error) {
	raw, err := c.Get(ctx, s.recordKey(id)).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	if err != nil {
		return nil, fmt.Errorf("reading approval %s from redis: %w", id, err)
	}
	var a Approval
	if err := json.Unmarshal(raw, &a); err != nil {
		return nil, fmt.Errorf("decoding approval %s from redis: %w", id, err)
	}
	return &a, nil
}

// save queues the writes that store a and tell every gateway of it.
func (s *redisStore) save(ctx context.Context, p redis.Pipeliner, a *Approval, ownsBinding bool) error {
	raw, err := json.Marshal(a)
	if err != nil {
		return fmt.Errorf("encoding approval %s: %w", a.ID, err)
	}
	forget := a.forgetAt()
	p.Set(ctx, s.recordKey(a.ID), raw, 0)
	p.PExpireAt(ctx, s.recordKey(a.ID), forget)
	p.ZAdd(ctx, s.allKey(), redis.Z{Score: float64(forget.UnixMilli()), Member: a.ID})
	if a.State == Pending {
		p.ZAdd(ctx, s.pendingKey(), redis.Z{Score: float64(a.ExpiresAt.UnixMilli()), Member: a.ID})
	} else {
		p.ZRem(ctx, s.pendingKey(), a.ID)
	}
	switch {
	case ownsBinding && a.settled():
		p.Del(ctx, s.bindingKey(a.bindingKey()))
	case ownsBinding:
		p.Set(ctx, s.bindingKey(a.bindingKey()), a.ID, 0)
		p.PExpireAt(ctx, s.bindingKey(a.bindingKey()), a.liveUntil())
	}
	p.Publish(ctx, s.channel(), a.ID)
	return nil
}

// transact runs fn as an optimistic transaction on the watched keys,
// again while another gateway changes them first.
func (s *redisStore) transact(ctx context.Context, fn func(*redis.Tx) error, keys ...string) error {
	for range maxTxAttempts {
		err := s.client.Watch(ctx, fn, keys...)
		if !errors.Is(err, redis.TxFailedErr) {
			return err
		}
	}
	return fmt.Errorf("redis: approval changed by others %d times in a row", maxTxAttempts)
}

func (s *redisStore) Create(ctx context.Context, a *Approval, now time.Time, olderKeys ...string) (*Approval, bool, error) {
	var existing *Approval
	var watched []string
	for _, key := range standingKeys(a, olderKeys) {
		watched = append(watched, s.bindingKey(key))
	}
	err := s.transact(ctx, func(tx *redis.Tx) error {
		var err error
		if existing, err = s.standing(ctx, tx, watched, now); err != nil || existing != nil {
			return err
		}
		_, err = tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
			return s.save(ctx, p, a, true)
		})
		return err
	}, watched...)
	if err != nil {
		return nil, false, fmt.Errorf("creating approval in redis: %w", err)
	}
	if existing != nil {
		return existing, false, nil
	}
	return a, true, nil
}

func (s *redisStore) Standing(ctx context.Context, a *Approval, now time.Time, olderKeys ...string) (*Approval, error) {
	var bindings []string
	for _, key := range standingKeys(a, olderKeys) {
		bindings = append(bindings, s.bindingKey(key))
	}
	existing, err := s.standing(ctx, s.client, bindings, now)
	if err == nil && existing == nil {
		err = fmt.Errorf("%w: no approval stands for the call", ErrNotFound)
	}
	return existing, err
}

// standing returns the approval live at now that the first of bindings
// (Redis keys of bindings) names, or nil, read through c (a transaction's
// connection, in Create).
func (s *redisStore) standing(ctx context.Context, c redis.Cmdable, bindings []string, now time.Time) (*Approval, error) {
	for _, key := range bindings {
		id, err := c.Get(ctx, key).Result()
		if err != nil && !errors.Is(err, redis.Nil) {
			return nil, fmt.Errorf("reading approval binding from redis: %w", err)
		}
		if id == "" {
			continue
		}
		current, err := s.get(ctx, c, id)
		if err != nil && !errors.Is(err, ErrNotFound) {
			return nil, err
		}
		if current != nil && current.Live(now) {
			return current, nil
		}
	}
	return nil, nil
}

func (s *redisStore) Get(ctx context.Context, id string) (*Approval, error) {
	return s.get(ctx, s.client, id)
}

func (s *redisStore) Update(ctx context.Context, id string, change func(*Approval) error) (*Approval, error) {
	var updated *Approval
	err := s.transact(ctx, func(tx *redis.Tx) error {
		a, err := s.get(ctx, tx, id)
		if err != nil {
			return err
		}
		binding := s.bindingKey(a.bindingKey())
		if err := tx.Watch(ctx, binding).Err(); err != nil {
			return fmt.Errorf("watching approval binding in redis: %w", err)
		}
		owner, err := tx.Get(ctx, binding).Result()
		if err != nil && !errors.Is(err, redis.Nil) {
			return fmt.Errorf("reading approval binding from redis: %w", err)
		}
		if err := change(a); err != nil {
			return err
		}
		_, err = tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
			return s.save(ctx, p, a, owner == id)
		})
		updated = a
		return err
	}, s.recordKey(id))
	if err != nil {
		return nil, err
	}
	return updated, nil
}

func (s *redisStore) List(ctx context.Context) ([]*Approval, error) {
	ids, err := s.client.ZRange(ctx, s.allKey(), 0, -1).Result()
	if err != nil {
		return nil, fmt.Errorf("listing approvals in redis: %w", err)
	}
	if len(ids) == 0 {
		return nil, nil
	}
	keys := make([]string, len(ids))
	for i, id := range ids {
		keys[i] = s.recordKey(id)
	}
	values, err := s.client.MGet(ctx, keys...).Result()
	if err != nil {
		return nil, fmt.Errorf("reading approvals from redis: %w", err)
	}
	list := make([]*Approval, 0, len(values))
	for _, value := range values {
		raw, ok := value.(string)
		if !ok {
			continue // forgotten since the listing
		}
		var a Approval
		if err := json.Unmarshal([]byte(raw), &a); err != nil {
			return nil, fmt.Errorf("decoding an approval from redis: %w", err)
		}
		list = append(list, &a)
	}
	sortByRequest(list)
	return list, nil
}

func (s *redisStore) Due(ctx context.Context, now time.Time) ([]string, error) {
	nowMs := fmt.Sprint(now.UnixMilli())
	if err := s.client.ZRemRangeByScore(ctx, s.allKey(), "-inf", "("+nowMs).Err(); err != nil {
		return nil, fmt.Errorf("forgetting old approvals in redis: %w", err)
	}
	due, err := s.client.ZRangeArgs(ctx, redis.ZRangeArgs{Key: s.pendingKey(), Start: "-inf", Stop: nowMs, ByScore: true}).Result()
	if err != nil {
		return nil, fmt.Errorf("finding expired approvals in redis: %w", err)
	}
	if len(due) == 0 {
		return nil, nil
	}
	// A pending id whose approval is gone (evicted, or forgotten while no
	// gateway swept) could never be expired: it leaves the index here,
	// rather than come back every sweep and count as pending.
	pipe := s.client.Pipeline()
	exists := make([]*redis.IntCmd, len(due))
	for i, id := range due {
		exists[i] = pipe.Exists(ctx, s.recordKey(id))
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, fmt.Errorf("finding expired approvals in redis: %w", err)
	}
	var live []string
	var gone []any
	for i, id := range due {
		if exists[i].Val() > 0 {
			live = append(live, id)
		} else {
			gone = append(gone, id)
		}
	}
	if len(gone) > 0 {
		if err := s.client.ZRem(ctx, s.pendingKey(), gone...).Err(); err != nil {
			return nil, fmt.Errorf("dropping lost approvals from redis's pending index: %w", err)
		}
	}
	return live, nil
}

func (s *redisStore) CountPending(ctx context.Context) (int, error) {
	n, err := s.client.ZCard(ctx, s.pendingKey()).Result()
	if err != nil {
		return 0, fmt.Errorf("counting pending approvals in redis: %w", err)
	}
	return int(n), nil
}

func (s *redisStore) Claim(ctx context.Context, key string, ttl time.Duration) (bool, error) {
	fresh, err := s.client.SetNX(ctx, s.claimKey(key), 1, ttl).Result()
	if err != nil {
		return false, fmt.Errorf("claiming a one-time key in redis: %w", err)
	}
	return fresh, nil
}

func (s *redisStore) Unclaim(ctx context.Context, key string) error {
	if err := s.client.Del(ctx, s.claimKey(key)).Err(); err != nil {
		return fmt.Errorf("forgetting a one-time key in redis: %w", err)
	}
	return nil
}

func (s *redisStore) Scope() string { return s.scope }

func (s *redisStore) Close() error {
	s.stop()
	err := s.pubsub.Close()
	s.listener.Wait()
	if s.ownsClient {
		err = errors.Join(err, s.client.Close())
	}
	return err
}
