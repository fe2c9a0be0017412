package adminapi

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"errors"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/mcpgate/mcpgate/caddymodule/approvalhttp"
)

// observedLogs returns Logs that record into the returned observer.
func observedLogs() (Logs, *observer.ObservedLogs) {
	core, logs := observer.New(zapcore.InfoLevel)
	logger := zap.New(core)
	return func() *zap.Logger { return logger }, logs
}

// Where a request came from, as net/http tells a handler.
var (
	unixSocket = &net.UnixAddr{Name: "/run/mcpgate/admin.sock", Net: "unix"}
	localTCP   = &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 2019}
)

// over returns req as received on a listener at local, over TLS with
// state when state is not nil.
func over(req *http.Request, local net.Addr, state *tls.ConnectionState) *http.Request {
	req = req.WithContext(context.WithValue(req.Context(), http.LocalAddrContextKey, local))
	req.TLS = state
	return req
}

// clientCertificate returns the TLS state of a connection whose client
// presented a certificate for commonName, verified when verified is set.
func clientCertificate(commonName string, verified bool) *tls.ConnectionState {
	cert := &x509.Certificate{Subject: pkix.Name{CommonName: commonName}}
	state := &tls.ConnectionState{HandshakeComplete: true, PeerCertificates: []*x509.Certificate{cert}}
	if verified {
		state.VerifiedChains = [][]*x509.Certificate{{cert}}
	}
	return state
}

// issuedCertificate is the state of a TLS connection whose client
// certificate, for commonName, was verified against a trusted CA whose
// certificate is caDER.
func issuedCertificate(commonName string, caDER []byte) *tls.ConnectionState {
	state := clientCertificate(commonName, true)
	state.VerifiedChains[0] = append(state.VerifiedChains[0], &x509.Certificate{Raw: caDER, Subject: pkix.Name{CommonName: "ops CA"}})
	return state
}

// caFingerprint names the CA of issuedCertificate(_, "the CA's DER"): the
// first 16 hex digits of the SHA-256 of its certificate.
var caFingerprint = func() string {
	sum := sha256.Sum256([]byte("the CA's DER"))
	return hex.EncodeToString(sum[:8])
}()

// twoCommonNames is the state of a TLS connection whose verified client
// certificate's subject names two common names, first then last (which
// crypto/x509 keeps as its CommonName).
func twoCommonNames(first, last string) *tls.ConnectionState {
	state := clientCertificate(last, true)
	cert := state.VerifiedChains[0][0]
	cert.Subject.Names = []pkix.AttributeTypeAndValue{{Type: oidCommonName, Value: first}, {Type: oidCommonName, Value: last}}
	return state
}

// serve runs req through a mux of routes, as an admin API would, and
// returns the response and the refusal left to the host.
func serve(t *testing.T, routes []Route, req *http.Request) (*httptest.ResponseRecorder, *approvalhttp.Error) {
	t.Helper()
	var err error
	mux := http.NewServeMux()
	for _, route := range routes {
		mux.HandleFunc(route.Pattern, func(w http.ResponseWriter, r *http.Request) { err = route.Serve(w, r) })
	}
	rec := httptest.NewRecorder()
	mux.ServeHTTP(rec, req)
	if err == nil {
		return rec, nil
	}
	refused, ok := errors.AsType[*approvalhttp.Error](err)
	if !ok {
		t.Fatalf("%s %s returned %v, want nil or an *approvalhttp.Error", req.Method, req.URL, err)
	}
	return rec, refused
}

// checkRefusal fails the test unless refused is a refusal with status and
// reason, or, when status is 0, there is none.
func checkRefusal(t *testing.T, refused *approvalhttp.Error, status int, reason string) {
	t.Helper()
	switch {
	case status == 0 && refused != nil:
		t.Fatalf("refused with %v, want an answer", refused)
	case status == 0:
	case refused == nil:
		t.Fatalf("answered, want a refusal with %d %q", status, reason)
	case refused.Status != status || refused.Err.Error() != reason:
		t.Fatalf("refused with %d %q, want %d %q", refused.Status, refused.Err, status, reason)
	}
}

// notAnOperator is the reason a caller that is not an operator is refused.
const notAnOperator = "mcpgate's approval and tool routes answer only operators: " +
	"put Caddy's admin endpoint on a unix socket (admin unix//run/mcpgate/admin.sock), whose file permissions say who may use it, " +
	"or use Caddy's remote admin with client certificates; or decide in the approval inbox"

// TestOperator: callers over a unix socket are the admin, those with a
// verified client certificate the admin with its common name; everyone
// else is refused.
func TestOperator(t *testing.T) {
	tests := []struct {
		name           string
		local          net.Addr
		tls            *tls.ConnectionState
		wantID         string
		wantPrincipals []string
	}{
		{name: "unix socket", local: unixSocket,
			wantID: "admin", wantPrincipals: []string{"admin"}},
		{name: "local TCP", local: localTCP},
		{name: "no local address", local: nil},
		{name: "remote admin, verified certificate", local: localTCP, tls: clientCertificate("ops", true),
			wantID: "admin:ops", wantPrincipals: []string{"admin", "admin:ops"}},
		{name: "remote admin, verified certificate without a common name", local: localTCP, tls: clientCertificate("", true),
			wantID: "admin", wantPrincipals: []string{"admin"}},
		{name: "remote admin, certificate issued by a trusted CA", local: localTCP, tls: issuedCertificate("alice", []byte("the CA's DER")),
			wantID: "admin:alice@" + caFingerprint, wantPrincipals: []string{"admin", "admin:alice@" + caFingerprint}},
		{name: "remote admin, certificate with two common names", local: localTCP, tls: twoCommonNames("bob", "alice")},
		{name: "TLS, unverified certificate", local: localTCP, tls: clientCertificate("ops", false)},
		{name: "TLS, no client certificate", local: localTCP, tls: &tls.ConnectionState{HandshakeComplete: true}},
		{name: "TLS over a unix socket, no client certificate", local: unixSocket, tls: &tls.ConnectionState{HandshakeComplete: true},
			wantID: "admin", wantPrincipals: []string{"admin"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := over(httptest.NewRequest(http.MethodGet, "/mcpgate/approvals", nil), tt.local, tt.tls)
			by, err := operator(req, "alice")
			if tt.wantID == "" {
				refused, ok := errors.AsType[*approvalhttp.Error](err)
				if !ok || refused.Status != http.StatusForbidden || (!errors.Is(err, errNotAnOperator) && !strings.Contains(err.Error(), "2 common names")) {
					t.Fatalf("operator = %+v, %v; want a 403 refusal", by, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("operator refused: %v; want %s", err, tt.wantID)
			}
			if by.ID != tt.wantID || !slices.Equal(by.Principals, tt.wantPrincipals) || by.Claim != "alice" {
				t.Errorf("operator = %+v, want ID %s, principals %v, claim alice", by, tt.wantID, tt.wantPrincipals)
			}
			// The certificate's common name is who the operator is as a
			// caller, whatever CA issued it.
			if cn, named := strings.CutPrefix(tt.wantID, "admin:"); named {
				cn, _, _ = strings.Cut(cn, "@")
				if !slices.Equal(by.Callers, []string{cn}) {
					t.Errorf("operator's caller ids = %v, want [%s]", by.Callers, cn)
				}
			}
		})
	}
}

// TestOperatorOverConnections: what net/http tells a handler of a real
// connection is what operator goes by: a unix socket or a verified client
// certificate is an operator, plain TCP or TLS without one is not.
func TestOperatorOverConnections(t *testing.T) {
	clientCert, clientCAs := selfSignedClient(t, "ops")
	answer := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		by, err := operator(r, "")
		if err != nil {
			http.Error(w, err.Error(), http.StatusForbidden)
			return
		}
		io.WriteString(w, by.ID)
	})
	tests := []struct {
		name   string
		start  func(t *testing.T) (url string, client *http.Client)
		want   int
		wantID string
	}{
		{"unix socket", func(t *testing.T) (string, *http.Client) { return unixServer(t, answer) }, http.StatusOK, "admin"},
		{"TCP", func(t *testing.T) (string, *http.Client) {
			s := httptest.NewServer(answer)
			t.Cleanup(s.Close)
			return s.URL, s.Client()
		}, http.StatusForbidden, ""},
		{"TLS with a verified client certificate", func(t *testing.T) (string, *http.Client) {
			return tlsServer(t, answer, clientCAs, &clientCert)
		}, http.StatusOK, "admin:ops"},
		{"TLS without a client certificate", func(t *testing.T) (string, *http.Client) {
			return tlsServer(t, answer, clientCAs, nil)
		}, http.StatusForbidden, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			url, client := tt.start(t)
			resp, err := client.Get(url + "/mcpgate/approvals")
			if err != nil {
				t.Fatalf("GET: %v", err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tt.want || (tt.wantID != "" && string(body) != tt.wantID) {
				t.Errorf("answer = %d %q, want %d %q", resp.StatusCode, body, tt.want, tt.wantID)
			}
		})
	}
}

// unixServer serves handler on a unix socket and returns a URL and a
// client that reach it.
func unixServer(t *testing.T, handler http.Handler) (string, *http.Client) {
	t.Helper()
	// A socket's path is short (108 bytes); t.TempDir's can be longer.
	dir, err := os.MkdirTemp("", "adminapi")
	if err != nil {
		t.Fatalf("making a socket directory: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	socket := filepath.Join(dir, "admin.sock")
	listener, err := net.Listen("unix", socket)
	if err != nil {
		t.Fatalf("listening on %s: %v", socket, err)
	}
	s := &httptest.Server{Listener: listener, Config: &http.Server{Handler: handler}}
	s.Start()
	t.Cleanup(s.Close)
	client := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", socket)
		},
	}}
	t.Cleanup(client.CloseIdleConnections)
	return "http://admin", client
}

// tlsServer serves handler over TLS, verifying client certificates
// against clientCAs when given, and returns its URL and a client that
// presents cert (none when nil).
func tlsServer(t *testing.T, handler http.Handler, clientCAs *x509.CertPool, cert *tls.Certificate) (string, *http.Client) {
	t.Helper()
	s := httptest.NewUnstartedServer(handler)
	s.TLS = &tls.Config{ClientAuth: tls.VerifyClientCertIfGiven, ClientCAs: clientCAs}
	s.StartTLS()
	t.Cleanup(s.Close)
	client := s.Client()
	if cert != nil {
		client.Transport.(*http.Transport).TLSClientConfig.Certificates = []tls.Certificate{*cert}
	}
	return s.URL, client
}

// selfSignedClient returns a client certificate for commonName and the
// pool that verifies it.
func selfSignedClient(t *testing.T, commonName string) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("generating a key: %v", err)
	}
	template := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: commonName},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, template, template, &key.PublicKey, key)
	if err != nil {
		t.Fatalf("making a certificate: %v", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatalf("reading the certificate: %v", err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool
}

// TestRoutes: each route answers its pattern, and only with its method.
func TestRoutes(t *testing.T) {
	tests := []struct {
		name, method, path string
		routes             []Route
		wantReason         string
	}{
		{"POST the tools", http.MethodPost, "/mcpgate/tools", (&Tools{}).Routes(), "method POST not allowed"},
		{"GET an accept", http.MethodGet, "/mcpgate/tools/accept", (&Tools{}).Routes(), "method GET not allowed"},
		{"DELETE the approvals", http.MethodDelete, "/mcpgate/approvals", (&Approvals{}).Routes(), "method DELETE not allowed"},
		{"GET a decision", http.MethodGet, "/mcpgate/approvals/apr_x/approve", (&Approvals{}).Routes(), "method GET not allowed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := over(httptest.NewRequest(tt.method, tt.path, strings.NewReader("{}")), unixSocket, nil)
			_, refused := serve(t, tt.routes, req)
			checkRefusal(t, refused, http.StatusMethodNotAllowed, tt.wantReason)
		})
	}
}
