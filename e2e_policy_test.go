package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wire-mesh/wire/api"
	"github.com/wire-mesh/wire/server/servertest"
)

const e2ePolicy = `{
	"tagOwners": {"tag:web": []},
	"acls": [
		{"action": "accept", "src": ["alpha"], "dst": ["tag:web:80,443"]},
	],
}
`

// TestPolicyCommands drives the policy and tag commands of the binary
// against a running server: a key's tags reach the nodes it enrols, the
// policy changes what a node sees within a second, a bad policy is
// refused with its line and changes nothing, and policy test explains.
func TestPolicyCommands(t *testing.T) {
	dir := t.TempDir()
	srv := startServer(t, dir)
	ctx := context.Background()
	if _, err := wire(t, "server", "key", "create", "--state-dir", dir, "--tag", "tag:Web"); err == nil {
		t.Error("a key with a tag in upper case was made")
	}
	k := newKey(t, dir, "--reusable", "--tag", "tag:web")
	a, b := servertest.NewNode(t), servertest.NewNode(t)
	ca := nodeClient(t, srv.url, k, &a)
	for name, n := range map[string]*servertest.Node{"alpha": &a, "beta": &b} {
		if _, err := nodeClient(t, srv.url, k, n).Register(ctx, joinReq(name, *n, &k)); err != nil {
			t.Fatal(err)
		}
	}
	if out, err := wire(t, "server", "nodes", "--state-dir", dir); err != nil || strings.Count(out, "tag:web") != 2 {
		t.Errorf("wire server nodes after enrolling with a tagged key: %v\n%s", err, out)
	}
	if _, err := wire(t, "server", "node", "tag", "--state-dir", dir, "--clear", "alpha"); err != nil {
		t.Fatal(err)
	}

	// The policy: beta (tag:web) sees alpha, which may send it 80 and 443.
	first, _ := ca.Peers(ctx, "0", 0)
	file := writeFile(t, "policy.hujson", e2ePolicy)
	if out, err := wire(t, "server", "policy", "set", "--state-dir", dir, file); err != nil || !strings.Contains(out, "policy set") {
		t.Fatalf("policy set: %v %s", err, out)
	}
	delta := waitFull(t, ca, first.Version)
	if len(delta.Peers) != 2 || delta.Peers[1].Filter == nil || len(delta.Peers[1].Filter.Accept) != 0 {
		t.Errorf("alpha's view after the policy: %+v; want itself and beta, which may send it nothing", delta)
	}
	if got, err := wire(t, "server", "policy", "get", "--state-dir", dir); err != nil || got != e2ePolicy {
		t.Errorf("policy get: %v\n%s", err, got)
	}
	checkPolicyTest(t, dir, "alpha", "beta:443", "accept: acls[0] (line 4)")
	checkPolicyTest(t, dir, "beta", "alpha:80", "deny: no rule accepts")

	// A bad policy is refused with its line; the one in force stays.
	bad := writeFile(t, "bad.hujson", "{\n\t\"grants\": [],\n}\n")
	if _, err := wire(t, "server", "policy", "set", "--state-dir", dir, bad); err == nil || !strings.Contains(err.Error(), "line 2") || !strings.Contains(err.Error(), "unchanged") {
		t.Errorf("setting a policy with grants: %v; want refused at line 2, the policy unchanged", err)
	}
	if got, _ := wire(t, "server", "policy", "get", "--state-dir", dir); got != e2ePolicy {
		t.Errorf("the policy after a bad one was refused:\n%s", got)
	}
	if _, err := wire(t, "server", "node", "tag", "--state-dir", dir, "alpha", "tag:db"); err == nil || !strings.Contains(err.Error(), "not declared") {
		t.Errorf("a tag the policy does not declare: %v", err)
	}
	if _, err := wire(t, "server", "policy", "remove", "--state-dir", dir); err != nil {
		t.Fatal(err)
	}
	checkPolicyTest(t, dir, "beta", "alpha:80", "accept: the mesh has no policy")
}

func writeFile(t *testing.T, name, text string) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(f, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return f
}

// waitFull long-polls from since until a full answer (a new view) comes,
// for at most two seconds.
func waitFull(t *testing.T, c *api.Client, since string) api.PeersResponse {
	t.Helper()
	start := time.Now()
	for time.Since(start) < 2*time.Second {
		resp, err := c.Peers(context.Background(), since, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if resp.Full {
			return resp
		}
		since = resp.Version
	}
	t.Fatal("no new view within 2 s of the policy change")
	return api.PeersResponse{}
}

func checkPolicyTest(t *testing.T, dir, src, dst, want string) {
	t.Helper()
	out, err := wire(t, "server", "policy", "test", "--state-dir", dir, src, dst)
	if err != nil {
		out = err.Error()
	}
	if !strings.Contains(out, want) {
		t.Errorf("policy test %s %s: %q, want %q", src, dst, out, want)
	}
}

// TestPolicyRefusedOpen: --open mode cannot tell nodes apart, so a server
// whose store has a policy refuses to start in it rather than ignore it.
func TestPolicyRefusedOpen(t *testing.T) {
	dir := t.TempDir()
	newKey(t, dir)
	file := writeFile(t, "policy.hujson", e2ePolicy)
	if _, err := wire(t, "server", "policy", "set", "--state-dir", dir, file); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, wireBin, "server", "--open", "--state-dir", dir,
		"--listen", "127.0.0.1:0", "--stun-listen", "127.0.0.1:0", "--relay-listen", "127.0.0.1:0").CombinedOutput()
	if err == nil || ctx.Err() != nil || !strings.Contains(string(out), "--open has none") {
		t.Errorf("wire server --open with a policy: %v\n%s\nwant refused at once", err, out)
	}
}
