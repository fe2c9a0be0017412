package gateway

import (
	"slices"

	"github.com/mcpgate/mcpgate/caddymodule/mcphttp"
	"github.com/mcpgate/mcpgate/caddymodule/mcpmsg"
	"github.com/mcpgate/mcpgate/caddymodule/replyfilter"
)

// cacheableMethods are the requests whose results carry the cache hints
// of MCP 2026-07-28 (ttlMs, and cacheScope, "public" when absent): the
// schema's CacheableResult, go-sdk's Cacheable.
var cacheableMethods = []string{
	"server/discover",
	"tools/list",
	"prompts/list",
	"resources/list",
	"resources/templates/list",
	"resources/read",
}

// cacheableRequests returns, canonical, the ids of the allowed requests
// among the verdicts whose results carry cache hints under version; nil
// when there are none.
//
// The gateway decides every request per caller: a policy may read who
// calls, tools lists lose the tools the policy blocks for this caller,
// and what one caller may read another may not. A result it passes that
// says "public" lets any intermediary cache it and serve it to another
// caller (one caller's tools list, a resource another may not read), so
// the results of these requests go out "private" (only the requesting
// user's client may cache them), their ttlMs as the server set it.
func cacheableRequests(verdicts []verdict, version string) map[string]bool {
	if !mcphttp.CacheHintsDefined(version) {
		return nil
	}
	var ids map[string]bool
	for _, v := range verdicts {
		m := v.message
		if !v.forwardsRequest() || !slices.Contains(cacheableMethods, m.Method) {
			continue
		}
		if ids == nil {
			ids = make(map[string]bool)
		}
		ids[mcpmsg.CanonicalID(m.ID)] = true
	}
	return ids
}

// guardResults wraps a reply's RewriteResult with what the gateway does
// to every result it relays, after the rewrite: under block_secrets, a
// result that holds a well-known credential is withheld (see
// withholdSecrets; the reply's relay tells which request a result
// answers, when the gateway knows it); and the result is cached
// privately: a cacheScope it names is made "private", and one is added to
// the results of the requests named in cacheable (which go-sdk servers
// always give, and whose absence means "public"; see cacheableRequests).
func (g *Gateway) guardResults(rewrite func(id, result []byte) ([]byte, error), rl *relay, cacheable map[string]bool) func(id, result []byte) ([]byte, error) {
	return func(id, result []byte) ([]byte, error) {
		out, err := rewrite(id, result)
		if err != nil {
			return nil, err
		}
		if g.blocksSecrets() {
			request, known := rl.answers(id)
			if out, err = g.withholdSecrets(request, known, out); err != nil {
				return nil, err
			}
			if known {
				g.noteGivenCursor(rl.session, request.method, out)
			}
		}
		return replyfilter.PrivateCacheScope(out, cacheable[mcpmsg.CanonicalID(id)])
	}
}
