package dashboard_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"github.com/wire-mesh/wire/api"
	"github.com/wire-mesh/wire/server/servertest"
)

// chromium finds Debian's Chromium, or skips (fails under CI=true, which
// must install it: .ci/run does).
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("chromium is missing: .ci/run must install Debian's chromium")
	}
	t.Skip("chromium is missing (Debian's chromium): skipping the dashboard's browser test")
	return ""
}

// artifacts is where a test's screenshots go: $WIRE_ARTIFACTS, else
// wire-artifacts-UID in the temporary dir, one per user (a shared /tmp
// must not hold one user's directory that another cannot write). They
// stay after the test.
func artifacts(t *testing.T) string {
	dir := os.Getenv("WIRE_ARTIFACTS")
	if dir == "" {
		dir = filepath.Join(os.TempDir(), fmt.Sprintf("wire-artifacts-%d", os.Getuid()))
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// The dashboard in a real browser (Debian's Chromium, headless, no
// network but loopback): a wrong token is refused; the right one shows
// the mesh (map and table, a relayed pair among them); a key is created
// and revoked with the page's buttons; a node removed with its button
// goes from the page, and one removed elsewhere (the CLI, another admin)
// goes too, without a reload. The map's screenshot is kept.
func TestDashboardInChromium(t *testing.T) {
	exe := chromium(t)
	env, web := start(t)
	k := env.Key(t, true)
	for _, name := range []string{"alpha", "beta", "gamma"} {
		n := servertest.NewNode(t)
		req := api.RegisterRequest{NodeID: "id-" + name, NodeName: name, WGPublicKey: n.WGKey, Port: 51820, JoinKey: k.String(), Version: "test"}
		if name == "alpha" {
			req.Relayed = []string{"id-beta"}
		}
		if _, err := env.Client(t, &n).Register(ctx, req); err != nil {
			t.Fatal(err)
		}
	}

	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(exe), chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true), chromedp.NoFirstRun, chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-sync", true), chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1200, 1600))
	actx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	defer cancelAlloc()
	bctx, cancelBrowser := chromedp.NewContext(actx)
	defer cancelBrowser()
	bctx, cancel := context.WithTimeout(bctx, 60*time.Second)
	defer cancel()
	// Every confirm() the page asks is answered yes, as the admin would.
	err := chromedp.Listen(bctx, func(ev any) {
		if _, ok := ev.(*page.EventJavascriptDialogOpening); ok {
			go chromedp.Call(bctx, page.HandleJavaScriptDialog, page.HandleJavaScriptDialogParams{Accept: true}) // not from the listener's own goroutine
		}
	})
	if err != nil {
		t.Fatalf("starting Chromium: %v", err)
	}
	do := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(bctx, steps...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	count := func(css string) int {
		t.Helper()
		n, err := chromedp.Run(bctx, chromedp.Evaluate[int](`document.querySelectorAll(`+strconv.Quote(css)+`).length`))
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	text := func(css string) string {
		t.Helper()
		s, err := chromedp.Run(bctx, chromedp.Text(chromedp.CSS(css)))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	filled := func(id string) chromedp.Action[chromedp.Void] { // its text is there
		return chromedp.Poll[chromedp.Void](`document.getElementById(` + strconv.Quote(id) + `).textContent.length > 0`)
	}

	do("a wrong token", chromedp.Navigate(web.URL), chromedp.WaitVisible(chromedp.CSS("#login-form")),
		chromedp.SendKeys(chromedp.CSS("#token"), "not the token"), chromedp.Click(chromedp.CSS("#login-form button")), filled("login-error"))
	if msg := text("#login-error"); !strings.Contains(msg, "wrong admin token") {
		t.Errorf("the page says %q after a wrong token", msg)
	}

	if _, err := chromedp.Run(bctx, chromedp.Evaluate[string](`document.getElementById("token").value = ""`)); err != nil {
		t.Fatal(err)
	}
	do("logging in", chromedp.SendKeys(chromedp.CSS("#token"), env.Identity().AdminToken),
		chromedp.Click(chromedp.CSS("#login-form button")),
		chromedp.WaitVisible(chromedp.CSS(`#nodes tr[data-node="alpha"]`)), chromedp.WaitVisible(chromedp.CSS(`#nodes tr[data-node="gamma"]`)))
	if relay, direct := count("#map line.relay"), count("#map line.direct"); relay != 1 || direct != 2 {
		t.Errorf("the map draws %d relayed and %d direct pairs, want 1 (alpha-beta) and 2", relay, direct)
	}
	shot, err := chromedp.Run(bctx, chromedp.Screenshot(chromedp.CSS("#map"), chromedp.NodeVisible))
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(artifacts(t), "dashboard-map.png")
	if err := os.WriteFile(file, shot, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("the map's screenshot: %s (%d bytes)", file, len(shot))

	do("creating a key", chromedp.Click(chromedp.CSS("#key-form button")), chromedp.WaitVisible(chromedp.CSS("#new-key")), filled("new-key-value"))
	made, err := api.ParseJoinKey(text("#new-key-value"))
	if err != nil {
		t.Fatalf("the key the page shows: %v", err)
	}
	row := `#keys tr[data-key="` + made.ID + `"]`
	do("revoking it", chromedp.WaitVisible(chromedp.CSS(row)), chromedp.Click(chromedp.CSS(row+` button[data-action="revoke"]`)),
		chromedp.WaitNotPresent(chromedp.CSS(row)))
	if keys, _ := env.Store().Keys(ctx); len(keys) != 1 || keys[0].ID != k.ID {
		t.Errorf("keys after the revocation: %+v; want only the first", keys)
	}

	do("removing alpha with its button", chromedp.Click(chromedp.CSS(`#nodes tr[data-node="alpha"] button[data-action="remove"]`)),
		chromedp.WaitNotPresent(chromedp.CSS(`#nodes tr[data-node="alpha"]`)))
	if _, err := env.Store().RemoveNode(ctx, "beta"); err != nil { // as wire server node remove does
		t.Fatal(err)
	}
	start := time.Now()
	do("beta, removed elsewhere, vanishing live", chromedp.WaitNotPresent(chromedp.CSS(`#nodes tr[data-node="beta"]`)))
	if lag := time.Since(start); lag > 3*time.Second {
		t.Errorf("beta left the page %v after its removal", lag)
	}
	if rows := count("#nodes tbody tr"); rows != 1 {
		t.Errorf("%d nodes on the page, want 1 (gamma)", rows)
	}
}
