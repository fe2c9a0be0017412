package catalog

import (
	"context"
	"fmt"
	"strings"

	"github.com/redis/go-redis/v9"
)

// RedisPinStore keeps pins in Redis, one hash per server (tool -> hash),
// so that every gateway replica sharing the Redis shares what operators
// accepted.
type RedisPinStore struct {
	client *redis.Client
	prefix string
	// inherited is where the store's first pins are, when it has none
	// (see Inherit).
	inherited string
}

// NewRedisPinStore returns a store using client, with keys under prefix
// (e.g. "mcpgate:pins:").
func NewRedisPinStore(client *redis.Client, prefix string) *RedisPinStore {
	return &RedisPinStore{client: client, prefix: prefix}
}

// Inherit makes the pins under prefix the store's first ones: Load copies
// them (without replacing a pin the store has) until a copy has been made
// whole, which a key beside the store's own records. A store that keeps
// pins apart from others' (an approval instance's) starts from the pins
// it shared with them before, so that a definition that changed is not
// trusted anew on its first use after the move; a copy cut short (Redis
// lost, a replica starting beside) is made again at the next Load.
func (s *RedisPinStore) Inherit(prefix string) *RedisPinStore {
	s.inherited = prefix
	return s
}

// inheritedKey records that the pins Inherit names were copied whole. It
// is outside the store's prefix, which Load reads as servers' pins.
func (s *RedisPinStore) inheritedKey() string {
	return strings.TrimSuffix(s.prefix, ":") + "-inherited"
}

// Load reads every server's pins.
func (s *RedisPinStore) Load(ctx context.Context) (map[string]map[string]string, error) {
	if s.inherited != "" {
		if err := s.inherit(ctx); err != nil {
			return nil, err
		}
	}
	return s.load(ctx, s.prefix)
}

// inherit copies the pins Inherit names, unless a copy was made whole.
func (s *RedisPinStore) inherit(ctx context.Context) error {
	done, err := s.client.Exists(ctx, s.inheritedKey()).Result()
	if err != nil {
		return fmt.Errorf("reading whether the pins of %s were taken on: %w", s.inherited, err)
	}
	if done > 0 {
		return nil
	}
	inherited, err := s.load(ctx, s.inherited)
	if err != nil {
		return err
	}
	for server, tools := range inherited {
		for tool, hash := range tools {
			if _, err := s.PinFirst(ctx, server, tool, hash); err != nil {
				return fmt.Errorf("taking on the pins of %s: %w", s.inherited, err)
			}
		}
	}
	if err := s.client.Set(ctx, s.inheritedKey(), s.inherited, 0).Err(); err != nil {
		return fmt.Errorf("recording that the pins of %s were taken on: %w", s.inherited, err)
	}
	return nil
}

// load reads every server's pins under prefix.
func (s *RedisPinStore) load(ctx context.Context, prefix string) (map[string]map[string]string, error) {
	pins := make(map[string]map[string]string)
	iter := s.client.Scan(ctx, 0, prefix+"*", 100).Iterator()
	for iter.Next(ctx) {
		key := iter.Val()
		tools, err := s.client.HGetAll(ctx, key).Result()
		if err != nil {
			return nil, fmt.Errorf("reading pins %s: %w", key, err)
		}
		pins[strings.TrimPrefix(key, prefix)] = tools
	}
	if err := iter.Err(); err != nil {
		return nil, fmt.Errorf("listing pins: %w", err)
	}
	return pins, nil
}

// Pins reads one server's pins.
func (s *RedisPinStore) Pins(ctx context.Context, server string) (map[string]string, error) {
	pins, err := s.client.HGetAll(ctx, s.prefix+server).Result()
	if err != nil {
		return nil, fmt.Errorf("reading pins of %s: %w", server, err)
	}
	return pins, nil
}

// pinFirst sets a hash field unless it is set, and returns its value then,
// in one step.
var pinFirst = redis.NewScript(`
if redis.call("HSETNX", KEYS[1], ARGV[1], ARGV[2]) == 1 then
	return ARGV[2]
end
return redis.call("HGET", KEYS[1], ARGV[1])
`)

// PinFirst pins one tool's hash unless another gateway pinned it first.
func (s *RedisPinStore) PinFirst(ctx context.Context, server, tool, hash string) (string, error) {
	pin, err := pinFirst.Run(ctx, s.client, []string{s.prefix + server}, tool, hash).Text()
	if err != nil {
		return "", fmt.Errorf("pinning %s on %s: %w", tool, server, err)
	}
	return pin, nil
}

// Save pins one tool's hash.
func (s *RedisPinStore) Save(ctx context.Context, server, tool, hash string) error {
	if err := s.client.HSet(ctx, s.prefix+server, tool, hash).Err(); err != nil {
		return fmt.Errorf("saving pin for %s on %s: %w", tool, server, err)
	}
	return nil
}

// Interface guard
var _ PinStore = (*RedisPinStore)(nil)
