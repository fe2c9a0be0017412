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
}

// NewRedisPinStore returns a store using client, with keys under prefix
// (e.g. "mcpgate:pins:").
func NewRedisPinStore(client *redis.Client, prefix string) *RedisPinStore {
	return &RedisPinStore{client: client, prefix: prefix}
}

// Load reads every server's pins.
func (s *RedisPinStore) Load(ctx context.Context) (map[string]map[string]string, error) {
	pins := make(map[string]map[string]string)
	iter := s.client.Scan(ctx, 0, s.prefix+"*", 100).Iterator()
	for iter.Next(ctx) {
		key := iter.Val()
		tools, err := s.client.HGetAll(ctx, key).Result()
		if err != nil {
			return nil, fmt.Errorf("reading pins %s: %w", key, err)
		}
		pins[strings.TrimPrefix(key, s.prefix)] = tools
	}
	if err := iter.Err(); err != nil {
		return nil, fmt.Errorf("listing pins: %w", err)
	}
	return pins, nil
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
