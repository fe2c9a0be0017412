package caddymodule_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpgate/mcpgate/caddymodule"
	"github.com/mcpgate/mcpgate/internal/clienttest"
	"github.com/mcpgate/mcpgate/internal/testwait"
	"github.com/mcpgate/mcpgate/internal/upstreamtest"
)

// TestLayoutChecked: a configuration in which a request reaches an
// upstream without passing mcp_policy (Caddy's order of handle, route and
// handle_path blocks before a site's own directives; a matcher on
// mcp_policy narrower than the proxy's; a handler after the proxy; the
// upstream reached again from another block, a named route or the error
// routes) does not start, and says where; layouts that gate every path to
// an upstream, or bypass one on purpose with mcp_bypass, start.
func TestLayoutChecked(t *testing.T) {
	const (
		upstream = "127.0.0.1:9"
		other    = "127.0.0.1:7"
		policy   = "mcp_policy {\n\t\t" + openTable + "\n\t}"
	)
	// A chain of named routes, each invoking the next twice: walked once
	// per way in, it would take 2^20 walks.
	chain := ""
	for i := range 20 {
		chain += fmt.Sprintf("&(r%d) {\n\tinvoke /a* r%d\n\tinvoke /b* r%d\n\trespond \"x\"\n}\n", i, i+1, i+1)
	}
	chain += "&(r20) {\n\trespond \"end\"\n}\n"
	tests := []struct {
		name, site, named, wantErr string
		// other is another site, on a port of its own. In both,
		// SITE_PORT and OTHER_PORT are the sites' ports.
		other string
		// edit, when set, changes the configuration's JSON, for what the
		// Caddyfile does not write.
		edit func(string) string
	}{
		// Refused.
		{name: "site-level mcp_policy, proxy in handle", site: policy + "\n\thandle /mcp* {\n\t\treverse_proxy " + upstream + "\n\t}",
			wantErr: "no mcp_policy guards anything, while the reverse_proxy to 127.0.0.1:9 is reached without one"},
		{name: "site-level mcp_policy, proxy in handle without matcher", site: policy + "\n\thandle {\n\t\treverse_proxy " + upstream + "\n\t}",
			wantErr: "is never reached"},
		{name: "site-level mcp_policy, proxy in route", site: policy + "\n\troute {\n\t\treverse_proxy " + upstream + "\n\t}",
			wantErr: "is never reached"},
		{name: "site-level mcp_policy, proxy in handle_path", site: policy + "\n\thandle_path /api/* {\n\t\treverse_proxy " + upstream + "\n\t}",
			wantErr: "no mcp_policy guards anything"},
		{name: "site-level mcp_policy, proxy in a named route", site: policy + "\n\tinvoke up", named: "&(up) {\n\treverse_proxy " + upstream + "\n}\n",
			wantErr: "no mcp_policy guards anything"},
		{name: "mcp_policy on a narrower path", site: "mcp_policy /mcp {\n\t\t" + openTable + "\n\t}\n\treverse_proxy " + upstream,
			wantErr: "no mcp_policy guards anything, while the reverse_proxy to 127.0.0.1:9 is reached without one"},
		{name: "mcp_policy after the proxy", site: "route {\n\t\treverse_proxy " + upstream + "\n\t\t" + policy + "\n\t}",
			wantErr: "is never reached: a handler before it"},
		{name: "mcp_policy in one handle, the proxy in another", site: "handle /mcp {\n\t\t" + policy + "\n\t}\n\thandle {\n\t\treverse_proxy " + upstream + "\n\t}",
			wantErr: "no mcp_policy guards anything"},
		{name: "the upstream reached again from another block", site: "handle /mcp* {\n\t\t" + policy + "\n\t\treverse_proxy " + upstream + "\n\t}\n\thandle {\n\t\treverse_proxy " + upstream + "\n\t}",
			wantErr: "the reverse_proxy to 127.0.0.1:9 is reached without mcp_policy at route 1, handler 0 (subroute) > route 0, handler 0 (reverse_proxy) of the server listening on"},
		{name: "the upstream reached again from the error routes", site: policy + "\n\treverse_proxy " + upstream + "\n\thandle_errors {\n\t\treverse_proxy " + upstream + "\n\t}",
			wantErr: "is reached without mcp_policy at error route"},
		{name: "a load-balanced gated proxy, one of its upstreams reached again", site: "handle /mcp* {\n\t\t" + policy + "\n\t\treverse_proxy " + upstream + " " + other + "\n\t}\n\thandle {\n\t\treverse_proxy " + upstream + "\n\t}",
			wantErr: "is reached without mcp_policy"},
		{name: "the upstream spelt localhost", site: "handle /mcp* {\n\t\t" + policy + "\n\t\treverse_proxy " + upstream + "\n\t}\n\thandle {\n\t\treverse_proxy localhost:9\n\t}",
			wantErr: "is reached without mcp_policy at route 1"},
		{name: "dynamic upstreams reached without mcp_policy", site: "handle /mcp* {\n\t\t" + policy + "\n\t\treverse_proxy " + upstream + "\n\t}\n\thandle {\n\t\treverse_proxy {\n\t\t\tdynamic a localhost 9\n\t\t}\n\t}",
			wantErr: "whose upstream is chosen at run time"},
		{name: "the upstream spelt 0.0.0.0", site: "handle /mcp* {\n\t\t" + policy + "\n\t\treverse_proxy " + upstream + "\n\t}\n\thandle {\n\t\treverse_proxy 0.0.0.0:9\n\t}",
			wantErr: "is reached without mcp_policy at route 1"},
		{name: "the upstream spelt [::1%lo]", site: "handle /mcp* {\n\t\t" + policy + "\n\t\treverse_proxy " + upstream + "\n\t}\n\thandle {\n\t\treverse_proxy [::1%lo]:9\n\t}",
			wantErr: "is reached without mcp_policy at route 1"},
		{name: "the upstream spelt tcp4/", site: "handle /mcp* {\n\t\t" + policy + "\n\t\treverse_proxy " + upstream + "\n\t}\n\thandle {\n\t\treverse_proxy tcp4/127.0.0.1:9\n\t}",
			wantErr: "is reached without mcp_policy at route 1"},
		{name: "an earlier route of mcp_policy's group", site: "@ua header User-Agent *\n\thandle @ua {\n\t\theader X-Seen 1\n\t}\n\thandle /mcp* {\n\t\t" + policy + "\n\t}\n\treverse_proxy /mcp* " + upstream,
			wantErr: "no mcp_policy guards anything"},
		{name: "two not matchers", site: "@pol not path /x*\n\t@prox not path /y*\n\tmcp_policy @pol {\n\t\t" + openTable + "\n\t}\n\treverse_proxy @prox " + upstream,
			wantErr: "no mcp_policy guards anything"},
		{name: "a proxy in a GET proxy's handle_response", site: "route {\n\t\treverse_proxy " + other + " {\n\t\t\tmethod GET\n\t\t\t@ok status 2xx\n\t\t\thandle_response @ok {\n\t\t\t\treverse_proxy " + upstream + "\n\t\t\t}\n\t\t}\n\t\t" + policy + "\n\t\treverse_proxy " + upstream + "\n\t}",
			wantErr: "handle_response 0 > route"},
		{name: "mcp_bypass out of its block", site: "route {\n\t\tmcp_bypass\n\t\theader X-A 1\n\t}\n\thandle /mcp* {\n\t\t" + policy + "\n\t\treverse_proxy " + upstream + "\n\t}\n\treverse_proxy /other* " + upstream,
			wantErr: "is reached without mcp_policy"},
		{name: "a proxy the request steers", site: "handle /mcp* {\n\t\t" + policy + "\n\t\treverse_proxy " + upstream + "\n\t}\n\thandle {\n\t\treverse_proxy {http.request.header.X-Up}\n\t}",
			wantErr: "whose upstream is chosen at run time"},
		{name: "a route after a group", site: "handle /mcp* {\n\t\t" + policy + "\n\t\treverse_proxy " + upstream + "\n\t}\n\thandle /static* {\n\t\theader X-A 1\n\t}\n\thandle {\n\t\treverse_proxy " + other + "\n\t}\n\troute {\n\t\treverse_proxy " + upstream + "\n\t}",
			wantErr: "the reverse_proxy to 127.0.0.1:9 is reached without mcp_policy"},
		{name: "the request changed between two routes of one matcher", site: "route {\n\t\tmcp_policy /mcp {\n\t\t\t" + openTable + "\n\t\t}\n\t\turi strip_suffix /\n\t\treverse_proxy /mcp " + upstream + "\n\t}",
			wantErr: "no mcp_policy guards anything"},
		{name: "a proxy in intercept's handle_response", site: "handle /mcp* {\n\t\t" + policy + "\n\t\treverse_proxy " + upstream + "\n\t}\n\thandle {\n\t\tintercept {\n\t\t\t@nf status 404\n\t\t\thandle_response @nf {\n\t\t\t\treverse_proxy " + upstream + "\n\t\t\t}\n\t\t}\n\t\trespond 404\n\t}",
			wantErr: "handle_response 0 > route"},
		{name: "a proxy asking with the request's own method", site: "route {\n\t\treverse_proxy " + upstream + " {\n\t\t\tmethod {http.request.method}\n\t\t\t@ok status 2xx\n\t\t\thandle_response @ok {\n\t\t\t\tcopy_response\n\t\t\t}\n\t\t}\n\t\t" + policy + "\n\t\treverse_proxy " + upstream + "\n\t}",
			wantErr: "is reached without mcp_policy at route 0, handler 0 (subroute) > route 0, handler 0 (reverse_proxy)"},
		{name: "the upstream reached from another port", site: policy + "\n\treverse_proxy " + upstream, other: "reverse_proxy " + upstream,
			wantErr: "the reverse_proxy to 127.0.0.1:9 is reached without mcp_policy"},
		{name: "the upstream reached from a subroute's error routes", site: "route {\n\t\t" + policy + "\n\t\treverse_proxy " + upstream + "\n\t}",
			edit: func(cfg string) string {
				return strings.Replace(cfg, `"handler":"subroute"`, `"errors":{"routes":[{"handle":[{"handler":"reverse_proxy","upstreams":[{"dial":"`+upstream+`"}]}]}]},"handler":"subroute"`, 1)
			},
			wantErr: "> error route 0, handler 0 (reverse_proxy)"},
		{name: "the upstream reached after a proxy that falls through", site: "handle /mcp* {\n\t\t" + policy + "\n\t\treverse_proxy " + upstream + "\n\t}\n\thandle {\n\t\treverse_proxy " + other + " {\n\t\t\t@nf status 404\n\t\t\thandle_response @nf {\n\t\t\t\trequest_header X-Fell-Through 1\n\t\t\t}\n\t\t}\n\t\treverse_proxy " + upstream + "\n\t}",
			wantErr: "the reverse_proxy to 127.0.0.1:9 is reached without mcp_policy"},
		{name: "a proxy whose address a file gives", site: "handle /mcp* {\n\t\t" + policy + "\n\t\treverse_proxy " + upstream + "\n\t}\n\thandle {\n\t\treverse_proxy 127.0.0.1:1\n\t}",
			edit: func(cfg string) string {
				return strings.Replace(cfg, `"127.0.0.1:1"`, `"127.0.0.1:{file./nonexistent/port}"`, 1)
			},
			wantErr: "whose upstream is chosen at run time"},
		// Started.
		{name: "the documented layout", site: policy + "\n\treverse_proxy " + upstream},
		{name: "both in one handle", site: "handle /mcp* {\n\t\t" + policy + "\n\t\treverse_proxy " + upstream + "\n\t}"},
		{name: "both in one handle_path", site: "handle_path /api/* {\n\t\t" + policy + "\n\t\treverse_proxy " + upstream + "\n\t}"},
		{name: "both in one route, rewritten between", site: "route {\n\t\t" + policy + "\n\t\trewrite * /other\n\t\treverse_proxy " + upstream + "\n\t}"},
		{name: "one matcher on both", site: "mcp_policy /mcp* {\n\t\t" + openTable + "\n\t}\n\treverse_proxy /mcp* " + upstream},
		{name: "another upstream without mcp_policy", site: "handle /mcp* {\n\t\t" + policy + "\n\t\treverse_proxy " + upstream + "\n\t}\n\thandle {\n\t\treverse_proxy " + other + "\n\t}"},
		{name: "forward_auth before mcp_policy", site: "forward_auth 127.0.0.1:8 {\n\t\turi /verify\n\t\tcopy_headers Remote-User\n\t}\n\tmcp_policy {\n\t\tidentity caddy {http.request.header.Remote-User}\n\t\t" + openTable + "\n\t}\n\treverse_proxy " + upstream},
		{name: "one matcher of several kinds on both", site: "@mcp {\n\t\tpath /mcp*\n\t\tmethod POST GET DELETE\n\t\theader Accept *json*\n\t}\n\troute {\n\t\tmcp_policy @mcp {\n\t\t\t" + openTable + "\n\t\t}\n\t\theader X-A 1\n\t\treverse_proxy @mcp " + upstream + "\n\t}"},
		{name: "one expression matcher on both", site: "@mcp expression `{path}.startsWith(\"/mcp\")`\n\troute {\n\t\tmcp_policy @mcp {\n\t\t\t" + openTable + "\n\t\t}\n\t\treverse_proxy @mcp " + upstream + "\n\t}"},
		{name: "a long chain of named routes", site: "handle /mcp* {\n\t\t" + policy + "\n\t\treverse_proxy " + upstream + "\n\t}\n\tinvoke r0", named: chain},
		{name: "another upstream from the environment", site: "handle /mcp* {\n\t\t" + policy + "\n\t\treverse_proxy " + upstream + "\n\t}\n\thandle {\n\t\treverse_proxy {env.MCPGATE_TEST_WEB}\n\t}"},
		{name: "the upstream bypassed on purpose on one path", site: "mcp_bypass /healthz\n\treverse_proxy /healthz " + upstream + "\n\thandle /mcp* {\n\t\t" + policy + "\n\t\treverse_proxy " + upstream + "\n\t}"},
		// (A site proxying to one of this configuration's own sites that
		// listens beyond this machine: TestLayoutFollowsOwnListeners.)
		{name: "an inner site on 127.0.0.1 proxying to the upstream", site: policy + "\n\treverse_proxy 127.0.0.1:OTHER_PORT", other: "reverse_proxy " + upstream},
		{name: "a front site proxying to the gateway's site", site: policy + "\n\treverse_proxy " + upstream, other: "reverse_proxy 127.0.0.1:SITE_PORT"},
		{name: "the upstream bypassed on purpose", site: "handle /health {\n\t\tmcp_bypass\n\t\treverse_proxy " + upstream + "\n\t}\n\thandle {\n\t\t" + policy + "\n\t\treverse_proxy " + upstream + "\n\t}"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("XDG_DATA_HOME", t.TempDir())
			t.Setenv("MCPGATE_TEST_WEB", other)
			sitePort, otherPort := freePort(t), freePort(t)
			ports := strings.NewReplacer("SITE_PORT", fmt.Sprint(sitePort), "OTHER_PORT", fmt.Sprint(otherPort))
			caddyfile := globalOptions(t) + tt.named + fmt.Sprintf("\n:%d {\n\tbind 127.0.0.1\n\t%s\n}\n", sitePort, ports.Replace(tt.site))
			if tt.other != "" {
				caddyfile += fmt.Sprintf("\n:%d {\n\tbind 127.0.0.1\n\t%s\n}\n", otherPort, ports.Replace(tt.other))
			}
			wantErr := ports.Replace(tt.wantErr)
			// Caddy builds a matcher set from a map: loaded several times,
			// a layout meets its matchers in several orders.
			for range 4 {
				err := loadEditedCaddyfile(t, caddyfile, tt.edit)
				if err != nil {
					t.Logf("refused: %v", err)
				}
				switch {
				case wantErr == "" && err != nil:
					t.Fatalf("refused: %v\n%s", err, caddyfile)
				case wantErr != "" && (err == nil || !strings.Contains(err.Error(), wantErr)):
					t.Fatalf("loaded with %v; want it refused with %q\n%s", err, wantErr, caddyfile)
				}
			}
		})
	}
}

// TestServerNamesOfTheRunningConfiguration: operators name an upstream's
// tools by a handler's server name as the running configuration gives
// it; a configuration that failed to start changes nothing (an accept by
// a name it gave another upstream would accept that upstream's tool).
func TestServerNamesOfTheRunningConfiguration(t *testing.T) {
	t.Setenv("XDG_DATA_HOME", t.TempDir())
	const table = "permissions {\n\t\t\tread_only allow\n\t\t}"
	site := func(port int, names, layout string) string {
		return fmt.Sprintf("\n:%d {\n\tbind 127.0.0.1\n\tmcp_policy {\n\t\t%s\n\t\t%s\n\t}\n\treverse_proxy 127.0.0.1:%d\n%s}\n", port, names, table, port+1, layout)
	}
	first, second := freePort(t), freePort(t)
	steps := []struct {
		name, caddyfile string
		started         bool
		want            map[string]string
	}{
		{"tracker is u1", globalOptions(t) + site(first, "server tracker\n\t\tupstream u1", ""), true,
			map[string]string{"tracker": "u1", "mail": "mail"}},
		{"a reload that fails to start", globalOptions(t) + site(first, "server tracker", "\thandle_errors {\n\t\treverse_proxy 127.0.0.1:"+fmt.Sprint(first+1)+"\n\t}\n") +
			site(second, "server mail\n\t\tupstream u1", ""), false,
			map[string]string{"tracker": "u1", "mail": "mail"}},
		{"tracker is its own, mail is u1", globalOptions(t) + site(first, "server tracker", "") + site(second, "server mail\n\t\tupstream u1", ""), true,
			map[string]string{"tracker": "tracker", "mail": "u1"}},
	}
	for _, step := range steps {
		if err := loadCaddyfile(t, step.caddyfile); (err == nil) != step.started {
			t.Fatalf("%s: loading: %v", step.name, err)
		}
		for server, want := range step.want {
			if got := caddymodule.RunningUpstream(server); got != want {
				t.Errorf("%s: server %s stands for %q, want %q", step.name, server, got, want)
			}
		}
	}
}

// TestRefusedReloadKeepsTheList: a reload that does not start leaves the
// running configuration deciding by the catalog's list as before (a tool
// the upstream adds is learned, trusted on first use, and runs).
func TestRefusedReloadKeepsTheList(t *testing.T) {
	t.Setenv("XDG_DATA_HOME", t.TempDir())
	up := newUpstream(t, upstreamtest.StatelessJSON)
	port := freePort(t)
	url := fmt.Sprintf("http://127.0.0.1:%d/mcp", port)
	site := "\n:%d {\n\tbind 127.0.0.1\n\tmcp_policy {\n\t\t" + openTable + "\n\t}\n\treverse_proxy %s\n%s}\n"
	running := globalOptions(t) + fmt.Sprintf(site, port, strings.TrimPrefix(up.URL, "http://"), "")
	if err := loadCaddyfile(t, running); err != nil {
		t.Fatal(err)
	}
	waitForListener(t, port)
	refused := globalOptions(t) + fmt.Sprintf(site, port, strings.TrimPrefix(up.URL, "http://"),
		"\thandle_errors {\n\t\treverse_proxy "+strings.TrimPrefix(up.URL, "http://")+"\n\t}\n")
	if err := loadCaddyfile(t, refused); err == nil {
		t.Fatal("the reload with a path around mcp_policy started")
	}
	up.AddTool(&mcp.Tool{Name: "added", Annotations: &mcp.ToolAnnotations{ReadOnlyHint: true}})
	// The refused configuration's servers were started and stopped: a
	// connection one of them accepted was closed (EOF). Wait until the
	// running configuration answers alone.
	testwait.Until(t, 10*time.Second, func() string {
		resp, err := http.DefaultClient.Do(clienttest.NewRequest(t, http.MethodPost, url, nil, strings.NewReader(`{"jsonrpc":"2.0","id":0,"method":"ping"}`)))
		if err != nil {
			return err.Error()
		}
		resp.Body.Close()
		return ""
	})
	if _, body := post(t, url, nil, `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"added","arguments":{"text":"x"}}}`); !strings.Contains(string(body), "added:x") {
		t.Fatalf("a tool added after a refused reload: %s; want it learned and run", body)
	}
}

// TestDialKeys: dial addresses that reach one server are spelt alike:
// local addresses (this machine's own, and names that resolve to one,
// among them), IPv6 zones, unix paths made clean; other names are
// compared as written (sites behind one CDN share addresses), and two
// servers stay apart.
func TestDialKeys(t *testing.T) {
	lookups := 0
	lookup := func(_ context.Context, host string) ([]net.IPAddr, error) {
		lookups++
		switch host {
		case "mcp-alias":
			return []net.IPAddr{{IP: net.ParseIP("127.0.0.1")}}, nil
		case "mcp.internal", "other.internal":
			return []net.IPAddr{{IP: net.ParseIP("10.1.2.3")}, {IP: net.ParseIP("10.1.2.4")}}, nil
		}
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	var own string
	if addrs, err := net.InterfaceAddrs(); err == nil {
		for _, addr := range addrs {
			if prefix, ok := addr.(*net.IPNet); ok && !prefix.IP.IsLoopback() {
				own = prefix.IP.String()
				break
			}
		}
	}
	tests := []struct {
		a, b string
		same bool
	}{
		{"127.0.0.1:9", "localhost:9", true},
		{"127.0.0.1:9", "[::1%lo]:9", true},
		{"127.0.0.1:9", "[::ffff:127.0.0.1]:9", true},
		{"127.0.0.1:9", "mcp-alias:9", true},
		{"[fe80::1%eth0]:9", "[fe80::1]:9", true},
		{"unresolved.invalid:9", "UNRESOLVED.invalid.:9", true},
		{"mcp.internal:9", "MCP.internal:9", true},
		{"unix//run/mcp.sock", "unix//run//./mcp.sock", true},
		{"127.0.0.1:9", "mcp.internal:9", false},
		{"127.0.0.1:9", "127.0.0.1:10", false},
		// Sites behind one CDN or ingress share addresses: names that
		// resolve elsewhere are compared as written.
		{"10.1.2.4:9", "mcp.internal:9", false},
		{"other.internal:9", "mcp.internal:9", false},
		{"unresolved.invalid:9", "other.invalid:9", false},
		{"unix//run/mcp.sock", "unix//run/MCP.sock", false},
	}
	if own != "" {
		tests = append(tests, struct {
			a, b string
			same bool
		}{"127.0.0.1:9", net.JoinHostPort(own, "9"), true})
	}
	for _, tt := range tests {
		keys := caddymodule.DialKeys(lookup, tt.a, tt.b)
		if same := keys[0] == keys[1]; same != tt.same {
			t.Errorf("%s (%s) and %s (%s): one server %v; want %v", tt.a, keys[0], tt.b, keys[1], same, tt.same)
		}
	}
	before := lookups
	caddymodule.DialKeys(lookup, "mcp-alias:9", "mcp-alias:10", "MCP-alias:11")
	if n := lookups - before; n != 1 {
		t.Errorf("one name in three dials was looked up %d times; want once", n)
	}
}
