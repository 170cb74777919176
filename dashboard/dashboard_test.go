package dashboard_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/wire-mesh/wire/api"
	"github.com/wire-mesh/wire/dashboard"
	"github.com/wire-mesh/wire/server/servertest"
)

var ctx = context.Background()

// start runs a server, and its dashboard on loopback.
func start(t *testing.T) (*servertest.Env, *httptest.Server) {
	t.Helper()
	env := servertest.Start(t, "")
	d := dashboard.New(env.Server, dashboard.Options{Token: env.Identity().AdminToken})
	web := httptest.NewServer(d.Handler())
	t.Cleanup(web.Close)
	return env, web
}

// browser is an HTTP client with a cookie jar, as a browser on the page.
type browser struct {
	t    *testing.T
	web  *httptest.Server
	c    *http.Client
	csrf string
}

func newBrowser(t *testing.T, web *httptest.Server) *browser {
	jar, _ := cookiejar.New(nil)
	return &browser{t: t, web: web, c: &http.Client{Jar: jar}}
}

// do sends a request as the page would (same origin, the CSRF token on
// changes) and returns its status and decoded body.
func (b *browser) do(method, path string, body any, header ...string) (int, map[string]any) {
	b.t.Helper()
	var rd *bytes.Reader
	if body != nil {
		j, _ := json.Marshal(body)
		rd = bytes.NewReader(j)
	} else {
		rd = bytes.NewReader(nil)
	}
	req, _ := http.NewRequest(method, b.web.URL+path, rd)
	req.Header.Set("Content-Type", "application/json")
	if method == http.MethodPost {
		req.Header.Set("Origin", b.web.URL)
		req.Header.Set("X-Wire-CSRF", b.csrf)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := b.c.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

func (b *browser) login(token string) int {
	b.t.Helper()
	code, out := b.do(http.MethodPost, "/login", map[string]string{"token": token})
	if code == http.StatusOK {
		b.csrf, _ = out["csrf"].(string)
	}
	return code
}

// The page needs a login with the admin token; wrong tokens are refused,
// and after five in a row from one address, limited; every change needs
// the session's cookie, its CSRF token and no other site as its origin.
func TestLoginAndCSRF(t *testing.T) {
	env, web := start(t)
	b := newBrowser(t, web)
	if code, _ := b.do(http.MethodGet, "/api/state", nil); code != http.StatusUnauthorized {
		t.Errorf("the state without a login: %d, want 401", code)
	}
	for i := range 5 {
		if code := b.login("wrong"); code != http.StatusUnauthorized {
			t.Errorf("wrong token %d: %d, want 401", i+1, code)
		}
	}
	if code := b.login(env.Identity().AdminToken); code != http.StatusTooManyRequests {
		t.Errorf("a sixth try at once, with the right token: %d, want 429 (limited)", code)
	}

	// Another address (another browser; the limit is per address in
	// production, one here): a fresh dashboard.
	env, web = start(t)
	b = newBrowser(t, web)
	if code, _ := b.do(http.MethodPost, "/login", map[string]string{"token": env.Identity().AdminToken}, "Origin", "https://evil.example"); code != http.StatusForbidden {
		t.Errorf("a login posted from another site: %d, want 403", code)
	}
	if code := b.login(env.Identity().AdminToken); code != http.StatusOK {
		t.Fatalf("the right token: %d", code)
	}
	code, st := b.do(http.MethodGet, "/api/state", nil)
	if code != http.StatusOK || st["csrf"] != b.csrf {
		t.Errorf("the state after login: %d %v", code, st)
	}
	key := map[string]any{"ttl_seconds": 3600}
	for _, tc := range []struct {
		what   string
		header []string
	}{
		{"without the CSRF token", []string{"X-Wire-CSRF", ""}},
		{"with a wrong CSRF token", []string{"X-Wire-CSRF", "00"}},
		{"from another site", []string{"Origin", "https://evil.example"}},
		{"marked cross-site by the browser", []string{"Sec-Fetch-Site", "cross-site"}},
	} {
		if code, _ := b.do(http.MethodPost, "/api/keys", key, tc.header...); code != http.StatusForbidden {
			t.Errorf("creating a key %s: %d, want 403", tc.what, code)
		}
	}
	if keys, _ := env.Store().Keys(ctx); len(keys) != 0 {
		t.Errorf("refused requests made keys: %+v", keys)
	}
	if code, out := b.do(http.MethodPost, "/api/keys", key); code != http.StatusOK || !strings.HasPrefix(out["key"].(string), "wire1-") {
		t.Errorf("creating a key from the page: %d %v", code, out)
	}
	if code, _ := b.do(http.MethodPost, "/logout", map[string]any{}); code != http.StatusOK {
		t.Errorf("logout: %d", code)
	}
	if code, _ := b.do(http.MethodGet, "/api/state", nil); code != http.StatusUnauthorized {
		t.Errorf("the state after logout: %d, want 401", code)
	}
}

// The API behind the page's buttons: keys created with their options and
// revoked; nodes renamed, expired and removed; bad requests refused with
// what is wrong; and the event stream sends the state again when the mesh
// changes.
func TestActionsAndEvents(t *testing.T) {
	env, web := start(t)
	b := newBrowser(t, web)
	if code := b.login(env.Identity().AdminToken); code != http.StatusOK {
		t.Fatal(code)
	}
	code, out := b.do(http.MethodPost, "/api/keys", map[string]any{"ttl_seconds": 86400, "reusable": true, "expire_seconds": 90 * 86400})
	if code != http.StatusOK {
		t.Fatalf("create key: %d %v", code, out)
	}
	k, err := api.ParseJoinKey(out["key"].(string))
	if err != nil {
		t.Fatal(err)
	}
	keys, _ := env.Store().Keys(ctx)
	if len(keys) != 1 || !keys[0].Reusable || keys[0].NodeTTL != 90*86400 {
		t.Errorf("the key as stored: %+v", keys)
	}
	for _, bad := range []map[string]any{{"ttl_seconds": 1}, {"ttl_seconds": 3600, "expire_seconds": 5}, {"ttl_seconds": 3600, "tags": []string{"server"}}, {"ttl": 3600}} {
		if code, _ := b.do(http.MethodPost, "/api/keys", bad); code != http.StatusBadRequest {
			t.Errorf("create key %v: %d, want 400", bad, code)
		}
	}

	// The event stream's first event, then one after a node enrols.
	req, _ := http.NewRequest(http.MethodGet, web.URL+"/api/events", nil)
	resp, err := b.c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	stream := bufio.NewScanner(resp.Body)
	stream.Buffer(nil, 1<<20)
	next := func() dashboard.State {
		t.Helper()
		for stream.Scan() {
			if data, ok := strings.CutPrefix(stream.Text(), "data: "); ok {
				var st dashboard.State
				if err := json.Unmarshal([]byte(data), &st); err != nil {
					t.Fatal(err)
				}
				return st
			}
		}
		t.Fatalf("the event stream ended: %v", stream.Err())
		return dashboard.State{}
	}
	if st := next(); len(st.Nodes) != 0 || len(st.Keys) != 1 {
		t.Errorf("first event: %+v", st)
	}
	n := servertest.NewNode(t)
	start := time.Now()
	if _, err := env.Client(t, &n).Register(ctx, api.RegisterRequest{NodeID: "id-a", NodeName: "a", WGPublicKey: n.WGKey, Port: 51820, JoinKey: k.String()}); err != nil {
		t.Fatal(err)
	}
	st := next()
	if len(st.Nodes) != 1 || st.Nodes[0].NodeName != "a" || !st.Nodes[0].Online || st.Keys[0].Uses != 1 {
		t.Errorf("the event after an enrolment: %+v", st)
	}
	if lag := time.Since(start); lag > 2*time.Second {
		t.Errorf("the enrolment's event came after %v", lag)
	}

	for _, tc := range []struct {
		path string
		body map[string]any
		want int
	}{
		{"/api/nodes/rename", map[string]any{"name": "a", "new_name": "-bad"}, http.StatusBadRequest},
		{"/api/nodes/rename", map[string]any{"name": "nobody", "new_name": "b"}, http.StatusNotFound},
		{"/api/nodes/rename", map[string]any{"name": "A", "new_name": "b"}, http.StatusOK},
		{"/api/nodes/expire", map[string]any{"name": "b"}, http.StatusOK},
		{"/api/nodes/remove", map[string]any{"name": "nobody"}, http.StatusNotFound},
		{"/api/nodes/remove", map[string]any{"name": "b"}, http.StatusOK},
		{"/api/keys/revoke", map[string]any{"id": k.ID}, http.StatusOK},
		{"/api/keys/revoke", map[string]any{"id": k.ID}, http.StatusNotFound},
	} {
		if code, out := b.do(http.MethodPost, tc.path, tc.body); code != tc.want {
			t.Errorf("%s %v: %d %v, want %d", tc.path, tc.body, code, out, tc.want)
		}
	}
	nodes, _ := env.Store().List(ctx, time.Now())
	keys, _ = env.Store().Keys(ctx)
	if len(nodes) != 0 || len(keys) != 0 {
		t.Errorf("after removing the node and revoking the key: nodes %+v, keys %+v", nodes, keys)
	}
}
