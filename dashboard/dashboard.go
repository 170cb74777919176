// Package dashboard is wire server's web page for its admin
// (--ui-listen): the mesh as a map and a table, kept live, and its join
// keys and nodes to manage. Everything the page needs is embedded in the
// binary; the admin logs in with the server's admin token.
package dashboard

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"embed"
	"encoding/hex"
	"errors"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/wire-mesh/wire/server"
)

//go:embed static
var static embed.FS

// Options configure a Dashboard.
type Options struct {
	// Token is the admin token (admin.token in the server's state dir),
	// which logs in.
	Token  string
	Logger *slog.Logger
}

// Dashboard serves the page and the API it calls.
type Dashboard struct {
	srv   *server.Server
	token string
	log   *slog.Logger

	mu       sync.Mutex
	sessions map[string]session
	logins   map[netip.Addr]*rate.Limiter // per client address, for bad tokens
}

// session is one logged-in browser: its cookie's value is the map's key.
type session struct {
	csrf    string // sent back by the page with every change it asks for
	expires time.Time
}

// Limits of sessions and of login attempts.
const (
	sessionLife = 12 * time.Hour
	maxSessions = 64
	// Five wrong tokens in a row, then one try every 10 s, per address.
	loginBurst = 5
	loginEvery = 10 * time.Second
	maxLogins  = 4096 // addresses tracked; more and the oldest are forgotten
	cookieName = "wire_session"
)

// New returns the dashboard of srv.
func New(srv *server.Server, o Options) *Dashboard {
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Dashboard{srv: srv, token: o.Token, log: log, sessions: map[string]session{}, logins: map[netip.Addr]*rate.Limiter{}}
}

// Handler serves the page, its files and its API.
func (d *Dashboard) Handler() http.Handler {
	files, _ := fs.Sub(static, "static")
	mux := http.NewServeMux()
	mux.Handle("GET /", noStore(http.FileServerFS(files)))
	mux.HandleFunc("POST /login", d.login)
	mux.HandleFunc("POST /logout", d.changes(d.logout))
	mux.HandleFunc("GET /api/state", d.reads(d.state))
	mux.HandleFunc("GET /api/events", d.reads(d.events))
	mux.HandleFunc("POST /api/keys", d.changes(d.createKey))
	mux.HandleFunc("POST /api/keys/revoke", d.changes(d.revokeKey))
	mux.HandleFunc("POST /api/nodes/rename", d.changes(d.renameNode))
	mux.HandleFunc("POST /api/nodes/remove", d.changes(d.removeNode))
	mux.HandleFunc("POST /api/nodes/expire", d.changes(d.expireNode))
	return securityHeaders(mux)
}

// Serve serves the dashboard on ln until ctx ends. Its events stream for
// as long as a page is open, so there is no write timeout.
func (d *Dashboard) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{Handler: d.Handler(), ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 15 * time.Second, IdleTimeout: 2 * time.Minute}
	stop := context.AfterFunc(ctx, func() { srv.Close() })
	defer stop()
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// securityHeaders keeps the page from being framed, sniffed or made to
// load anything from elsewhere.
func securityHeaders(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Security-Policy", "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("Referrer-Policy", "no-referrer")
		h.ServeHTTP(w, r)
	})
}

func noStore(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		h.ServeHTTP(w, r)
	})
}

// login checks the admin token and starts a session: a cookie the
// browser sends back only to this site, and a CSRF token the page sends
// with every change. Wrong tokens are limited per client address.
func (d *Dashboard) login(w http.ResponseWriter, r *http.Request) {
	if !sameOrigin(r) {
		fail(w, http.StatusForbidden, "a login from another site is refused")
		return
	}
	addr := clientAddr(r)
	if !d.loginAllowed(addr) {
		w.Header().Set("Retry-After", strconv.Itoa(int(loginEvery/time.Second)))
		fail(w, http.StatusTooManyRequests, "too many wrong tokens from this address: wait and try again")
		return
	}
	var req struct {
		Token string `json:"token"`
	}
	if !decode(w, r, &req) {
		return
	}
	if d.token == "" || subtle.ConstantTimeCompare([]byte(req.Token), []byte(d.token)) != 1 {
		d.log.Warn("dashboard: a wrong admin token", "from", addr)
		fail(w, http.StatusUnauthorized, "wrong admin token (it is admin.token in the server's state dir)")
		return
	}
	d.forgive(addr)
	id, s := d.newSession()
	http.SetCookie(w, &http.Cookie{Name: cookieName, Value: id, Path: "/", HttpOnly: true, SameSite: http.SameSiteStrictMode,
		Secure: r.TLS != nil, Expires: s.expires})
	reply(w, map[string]string{"csrf": s.csrf})
}

// loginAllowed says whether addr may try a token now, and counts the try.
func (d *Dashboard) loginAllowed(addr netip.Addr) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	lim, ok := d.logins[addr]
	if !ok {
		if len(d.logins) >= maxLogins {
			clear(d.logins)
		}
		lim = rate.NewLimiter(rate.Every(loginEvery), loginBurst)
		d.logins[addr] = lim
	}
	return lim.Allow()
}

// forgive forgets addr's wrong tokens once it got one right.
func (d *Dashboard) forgive(addr netip.Addr) {
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.logins, addr)
}

func (d *Dashboard) newSession() (string, session) {
	s := session{csrf: randomHex(), expires: time.Now().Add(sessionLife)}
	id := randomHex()
	d.mu.Lock()
	defer d.mu.Unlock()
	now := time.Now()
	for k, old := range d.sessions {
		if now.After(old.expires) || len(d.sessions) >= maxSessions {
			delete(d.sessions, k)
		}
	}
	d.sessions[id] = s
	return id, s
}

func (d *Dashboard) logout(w http.ResponseWriter, r *http.Request, id string) {
	d.mu.Lock()
	delete(d.sessions, id)
	d.mu.Unlock()
	http.SetCookie(w, &http.Cookie{Name: cookieName, Value: "", Path: "/", MaxAge: -1, HttpOnly: true, SameSite: http.SameSiteStrictMode})
	reply(w, map[string]bool{"ok": true})
}

// session returns the request's session, if its cookie names a live one.
func (d *Dashboard) session(r *http.Request) (string, session, bool) {
	c, err := r.Cookie(cookieName)
	if err != nil {
		return "", session{}, false
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	s, ok := d.sessions[c.Value]
	if !ok || time.Now().After(s.expires) {
		delete(d.sessions, c.Value)
		return "", session{}, false
	}
	return c.Value, s, true
}

// reads admits requests of a logged-in browser.
func (d *Dashboard) reads(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if _, _, ok := d.session(r); !ok {
			fail(w, http.StatusUnauthorized, "log in first")
			return
		}
		h(w, r)
	}
}

// changes admits a change only from the page itself: the session's
// cookie, its CSRF token in X-Wire-CSRF, and no other site as its origin.
func (d *Dashboard) changes(h func(http.ResponseWriter, *http.Request, string)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id, s, ok := d.session(r)
		switch {
		case !ok:
			fail(w, http.StatusUnauthorized, "log in first")
		case !sameOrigin(r):
			fail(w, http.StatusForbidden, "a change asked for by another site is refused")
		case subtle.ConstantTimeCompare([]byte(r.Header.Get("X-Wire-CSRF")), []byte(s.csrf)) != 1:
			fail(w, http.StatusForbidden, "missing or wrong X-Wire-CSRF header: reload the page")
		default:
			h(w, r, id)
		}
	}
}

// sameOrigin says whether the request comes from this site, as far as
// the browser says: its Origin (if any) is this host, and Sec-Fetch-Site
// (if any) is same-origin or none (typed in, a bookmark).
func sameOrigin(r *http.Request) bool {
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" && site != "same-origin" && site != "none" {
		return false
	}
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	scheme := "http://"
	if r.TLS != nil {
		scheme = "https://"
	}
	return origin == scheme+r.Host
}

func clientAddr(r *http.Request) netip.Addr {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	a, _ := netip.ParseAddr(host)
	return a.Unmap()
}

func randomHex() string {
	b := make([]byte, 32)
	rand.Read(b)
	return hex.EncodeToString(b)
}
