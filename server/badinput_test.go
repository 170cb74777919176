package server_test

import (
	"bufio"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/wire-mesh/wire/api"
	"github.com/wire-mesh/wire/server/servertest"
)

// rawClient sends hand-made requests as an enrolled node would.
func rawClient(env *servertest.Env, n *servertest.Node) *http.Client {
	return &http.Client{Transport: &http.Transport{TLSClientConfig: api.PinnedTLS(env.Identity().Pin, &n.Cert)}}
}

func TestBadInput(t *testing.T) {
	env := servertest.Start(t, "")
	n, _, _ := enrol(t, env, "good")
	hc := rawClient(env, &n)
	valid := `"node_id":"id-x","node_name":"x","wg_public_key":"` + servertest.NewNode(t).WGKey + `","port":51820,"nat_port":1`
	tests := []struct {
		name, method, path, body string
		code                     int
		want                     string
	}{
		{"bad JSON", "POST", "/register", `{bad`, 400, "bad JSON"},
		{"empty body", "POST", "/register", ``, 400, "empty body"},
		{"array", "POST", "/register", `[]`, 400, "want an object"},
		{"two values", "POST", "/register", `{` + valid + `} {}`, 400, "more than one value"},
		{"string port", "POST", "/register", `{"port":"51820"}`, 400, "field port"},
		{"number node_id", "POST", "/register", `{"node_id":5}`, 400, "field node_id"},
		{"unknown field", "POST", "/register", `{` + valid + `,"nat_prot":1}`, 400, "unknown field"},
		{"oversized", "POST", "/register", `{"node_id":"` + strings.Repeat("a", 70<<10) + `"}`, 413, "larger than"},
		{"bad name", "POST", "/register", `{"node_id":"id-x","node_name":"bad name!","wg_public_key":"","port":1}`, 400, "node_name"},
		{"bad node_id", "POST", "/register", `{"node_id":"../x y","node_name":"x","port":1}`, 400, "node_id"},
		{"bad wg key", "POST", "/register", `{"node_id":"id-x","node_name":"x","wg_public_key":"abc","port":1}`, 400, "wg_public_key"},
		{"port 0", "POST", "/register", `{` + strings.Replace(valid, `"port":51820`, `"port":0`, 1) + `}`, 400, "port 0"},
		{"port too big", "POST", "/register", `{` + strings.Replace(valid, `"port":51820`, `"port":70000`, 1) + `}`, 400, "port 70000"},
		{"negative nat_port", "POST", "/register", `{` + strings.Replace(valid, `"nat_port":1`, `"nat_port":-1`, 1) + `}`, 400, "nat_port"},
		{"bad lan_ip", "POST", "/register", `{` + valid + `,"lan_ip":"999.1.1.1"}`, 400, "lan_ip"},
		{"lan_ip with a zone", "POST", "/register", `{` + valid + `,"lan_ip":"fe80::1%eth0"}`, 400, "without a zone"},
		{"lan_ip with 60 KB of zone", "POST", "/register", `{` + valid + `,"lan_ip":"fe80::1%` + strings.Repeat(`\u001b[2J`, 6000) + `"}`, 400, `fe80::1%\x1b[2J`},
		{"wait past int64 seconds", "GET", "/peers?since=0&wait=9223372036854775807", ``, 200, ""},
		{"wait past uint64 seconds", "GET", "/peers?since=0&wait=99999999999999999999999", ``, 200, ""},
		{"negative wait", "GET", "/peers?since=0&wait=-5", ``, 400, "wait"},
		{"bad join key", "POST", "/register", `{` + valid + `,"join_key":"letmein"}`, 400, "join_key"},
		{"bad punch ip", "POST", "/punch", `{"from_vpn_ip":"x","to_vpn_ip":"10.99.0.1"}`, 400, "from_vpn_ip"},
		{"bad wait", "GET", "/peers?since=0&wait=soon", ``, 400, "wait"},
		{"unknown path", "GET", "/nodes", ``, 404, "no such endpoint"},
		{"wrong method", "GET", "/register", ``, 405, "use POST"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest(tt.method, env.URL()+tt.path, strings.NewReader(tt.body))
			resp, err := hc.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var e api.Error
			body, _ := io.ReadAll(resp.Body)
			if err := json.Unmarshal(body, &e); err != nil || resp.StatusCode != tt.code || !strings.Contains(e.Error, tt.want) {
				t.Errorf("got %d %.300s; want %d with an error naming %q", resp.StatusCode, body, tt.code, tt.want)
			}
			if strings.ContainsAny(e.Error, "\x1b\x07") || len(e.Error) > 1024 {
				t.Errorf("the error echoes what was sent raw or whole: %q", e.Error)
			}
		})
	}
	// The server is still fine, and the good node's record is intact.
	if st, err := env.Admin(t).Status(ctx); err != nil || st.Total != 1 {
		t.Errorf("after bad input: %+v, %v", st, err)
	}
}

func TestSlowClientTimedOut(t *testing.T) {
	t.Parallel()
	env := servertest.Start(t, "")
	conn, err := net.Dial("tcp", env.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// Start a TLS handshake and a request, then stall mid-header.
	tc := tls.Client(conn, api.PinnedTLS(env.Identity().Pin, nil))
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	io.WriteString(tc, "GET /health HTTP/1.1\r\nHost: x\r\n")
	tc.SetReadDeadline(time.Now().Add(20 * time.Second))
	start := time.Now()
	_, err = tc.Read(make([]byte, 1))
	if err == nil || time.Since(start) > 10*time.Second {
		t.Fatalf("stalled client: read returned %v after %v; want the server to hang up within ~5s", err, time.Since(start))
	}
}

// Node keys are ed25519, as documented; a client certificate with another
// kind of key neither enrols nor authenticates.
func TestOnlyEd25519NodeKeys(t *testing.T) {
	env := servertest.Start(t, "")
	k := env.Key(t, true)
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	for _, key := range []crypto.Signer{ec, rsaKey} {
		cert, err := api.SelfSigned(key, "wire-node")
		if err != nil {
			t.Fatal(err)
		}
		n := servertest.Node{Cert: cert, WGKey: servertest.NewNode(t).WGKey}
		c := env.Client(t, &n)
		name := fmt.Sprintf("%T", key)[1:4]
		if _, err := c.Register(ctx, register(name, n, &k)); statusCode(err) != http.StatusUnauthorized || !contains(err, "ed25519") {
			t.Errorf("%T node key: enrol err = %v, want 401 that says ed25519", key, err)
		}
		if _, err := c.Status(ctx); statusCode(err) != http.StatusUnauthorized {
			t.Errorf("%T node key: /status err = %v, want 401", key, err)
		}
	}
	if st, _ := env.Admin(t).Status(ctx); st.Total != 0 {
		t.Errorf("%d nodes enrolled", st.Total)
	}
}

// rawRequest sends bytes over a TLS connection to the server and returns
// the status and body of its answer.
func rawRequest(t *testing.T, env *servertest.Env, req string) (int, string, string) {
	t.Helper()
	c, err := tls.Dial("tcp", env.Addr().String(), api.PinnedTLS(env.Identity().Pin, nil))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(c, req)
	method, _, _ := strings.Cut(req, " ") // a HEAD's answer has no body
	resp, err := http.ReadResponse(bufio.NewReader(c), &http.Request{Method: method})
	if err != nil {
		t.Fatalf("%q: %v", req, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("Content-Type"), string(body)
}

// Where wire's handler sees the request, the answer is JSON, also for
// paths net/http's ServeMux would redirect or answer in plain text; where
// net/http answers before wire sees it, it answers as the README says.
func TestFramingAnswers(t *testing.T) {
	env := servertest.Start(t, "")
	for _, tt := range []struct {
		name, req string
		code      int
		want      string // in a JSON error; "" for net/http's own plain answers
	}{
		{"double slash", "GET //health HTTP/1.1\r\nHost: x\r\n\r\n", 404, "did you mean /health?"},
		{"dot segment", "GET /./health HTTP/1.1\r\nHost: x\r\n\r\n", 404, "did you mean /health?"},
		{"dot-dot segment", "GET /x/../status HTTP/1.1\r\nHost: x\r\n\r\n", 404, "did you mean /status?"},
		{"trailing slash", "GET /health/ HTTP/1.1\r\nHost: x\r\n\r\n", 404, "did you mean /health?"},
		{"OPTIONS *", "OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n", 404, "no such endpoint"},
		{"CONNECT", "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n", 404, "no such endpoint"},
		{"HEAD", "HEAD /register HTTP/1.1\r\nHost: x\r\n\r\n", 405, ""},
		// net/http's own answers, before any handler: documented.
		{"unsupported Transfer-Encoding", "POST /register HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", 501, ""},
		{"bad protocol version", "GET /health HTTP/9.9\r\nHost: x\r\n\r\n", 505, ""},
		{"no Host", "GET /health HTTP/1.1\r\n\r\n", 400, ""},
		{"malformed request line", "GET\r\n\r\n", 400, ""},
		{"header over 16 KiB", "GET /health HTTP/1.1\r\nHost: x\r\nX: " + strings.Repeat("a", 20<<10) + "\r\n\r\n", 431, ""},
	} {
		code, ctype, body := rawRequest(t, env, tt.req)
		if code != tt.code {
			t.Errorf("%s: %d %s, want %d", tt.name, code, body, tt.code)
			continue
		}
		if tt.want == "" {
			continue
		}
		var e api.Error
		if ctype != "application/json" || json.Unmarshal([]byte(body), &e) != nil || !strings.Contains(e.Error, tt.want) {
			t.Errorf("%s: %d %s %q, want JSON saying %q", tt.name, code, ctype, body, tt.want)
		}
	}
}
