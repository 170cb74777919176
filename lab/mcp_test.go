//go:build linux

package lab_test

import (
	"context"
	"encoding/json"
	"os/exec"
	"strings"
	"testing"
	"time"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/wire-mesh/wire/lab"
)

// TestMCPOnLabNodes drives `wire mcp` on a real node (real engine, behind
// a NAT) with the SDK's client: every tool, ending with wire_down and
// wire_up, which brings the node back.
func TestMCPOnLabNodes(t *testing.T) {
	m, n1, n2 := twoNATedNodes(t)

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	progress := make(chan *sdk.ProgressNotificationParams, 64)
	opts := &sdk.ClientOptions{ProgressNotificationHandler: func(_ context.Context, r *sdk.ProgressNotificationClientRequest) {
		progress <- r.Params
	}}
	cs, call := mcpSession(t, ctx, n1, opts)

	st := call("wire_status", nil)
	if st["vpn_ip"] != n1.vpnIP || st["engine"] != "userspace" {
		t.Errorf("wire_status: vpn_ip %v engine %v, want %s userspace", st["vpn_ip"], st["engine"], n1.vpnIP)
	}
	if peers, _ := st["peers"].([]any); len(peers) != 1 || peers[0].(map[string]any)["path"] != "direct" {
		t.Errorf("wire_status peers: %v, want n2 on a direct path", st["peers"])
	}
	ping := call("wire_ping", map[string]any{"target": "n2", "count": 2})
	if ping["received"].(float64) < 1 || ping["path"] != "direct" {
		t.Errorf("wire_ping n2: %v, want replies on the direct path", ping)
	}
	t.Logf("wire_ping n2 over MCP: %v received, path %v", ping["received"], ping["path"])
	who := call("wire_whoami", nil)
	if who["vpn_ip"] != n1.vpnIP || who["node_name"] != "n1" {
		t.Errorf("wire_whoami: %v", who)
	}
	for _, name := range []string{"wire_peers", "wire_install", "wire_diagnose", "wire_watchdog"} {
		if out := call(name, nil); len(out) == 0 {
			t.Errorf("%s: empty result", name)
		}
	}
	checkProgressAndCancel(t, ctx, cs, progress)
	diag, _ := json.Marshal(call("wire_diagnose", nil))
	if strings.Contains(string(diag), `"ok":false`) {
		t.Errorf("wire_diagnose on a healthy node found a problem: %s", diag)
	}

	// wire_down takes the node down (its interface goes), wire_up brings it
	// back from the saved config (detached: no systemd in the lab).
	call("wire_down", nil)
	if err := lab.Poll(10*time.Second, 200*time.Millisecond, func() error {
		if _, err := lab.Run(n1.ns, "ip", "link", "show", n1.iface); err == nil {
			return errString("interface still there")
		}
		return nil
	}); err != nil {
		t.Fatalf("after wire_down: %v", err)
	}
	n1.proc.Wait(10 * time.Second)
	up := call("wire_up", nil)
	if up["vpn_ip"] != n1.vpnIP {
		t.Errorf("wire_up: %v, want the node back on %s", up, n1.vpnIP)
	}
	t.Logf("wire_up over MCP brought n1 back: %v", up["vpn_ip"])
	m.waitPairs(meshTimeout, n1, n2)
	t.Cleanup(func() { exec.Command("ip", "netns", "exec", n1.ns.Name, wireBin, "down", "--state-dir", n1.dir).Run() })
}

// toolCall calls a tool and returns its structured result; a tool error
// fails the test.
type toolCall func(name string, args map[string]any) map[string]any

// mcpSession connects the SDK's client to `wire mcp` on a lab node.
func mcpSession(t *testing.T, ctx context.Context, n *node, opts *sdk.ClientOptions) (*sdk.ClientSession, toolCall) {
	t.Helper()
	cmd := lab.Command(ctx, n.ns, wireBin, "mcp", "--state-dir", n.dir)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	cs, err := sdk.NewClient(&sdk.Implementation{Name: "lab", Version: "1"}, opts).Connect(ctx, &sdk.CommandTransport{Command: cmd}, nil)
	if err != nil {
		t.Fatalf("connect to wire mcp on %s: %v\n%s", n.name, err, stderr.String())
	}
	t.Cleanup(func() { cs.Close() })
	call := func(name string, args map[string]any) map[string]any {
		t.Helper()
		res, err := cs.CallTool(ctx, &sdk.CallToolParams{Name: name, Arguments: args})
		if err != nil {
			t.Fatalf("%s on %s: %v", name, n.name, err)
		}
		if res.IsError {
			t.Fatalf("%s on %s: tool error: %+v", name, n.name, res.Content)
		}
		b, _ := json.Marshal(res.StructuredContent)
		var out map[string]any
		if err := json.Unmarshal(b, &out); err != nil {
			t.Fatalf("%s on %s: structured content %s: %v", name, n.name, b, err)
		}
		return out
	}
	return cs, call
}

// checkProgressAndCancel: a wire_ping with a progress token reports each
// echo; a long wire_ping cancelled by the client stops, and the server
// goes on serving.
func checkProgressAndCancel(t *testing.T, ctx context.Context, cs *sdk.ClientSession, progress chan *sdk.ProgressNotificationParams) {
	t.Helper()
	params := &sdk.CallToolParams{Name: "wire_ping", Arguments: map[string]any{"target": "n2", "count": 3}}
	params.SetProgressToken("ping-1")
	if res, err := cs.CallTool(ctx, params); err != nil || res.IsError {
		t.Fatalf("wire_ping with a progress token: %v %+v", err, res)
	}
	got := 0
	wait := time.After(2 * time.Second) // notifications may trail the result
collect:
	for got < 3 {
		select {
		case p := <-progress:
			if p.ProgressToken == "ping-1" {
				got++
			}
		case <-wait:
			break collect
		}
	}
	if got != 3 {
		t.Errorf("wire_ping count 3 sent %d progress notifications, want 3", got)
	}
	cctx, cancel := context.WithTimeout(ctx, 1500*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := cs.CallTool(cctx, &sdk.CallToolParams{Name: "wire_ping", Arguments: map[string]any{"target": "n2", "count": 20}})
	if err == nil || time.Since(start) > 5*time.Second {
		t.Errorf("a cancelled 20-echo wire_ping returned %v after %v, want a prompt cancellation", err, time.Since(start))
	}
	if _, err := cs.CallTool(ctx, &sdk.CallToolParams{Name: "wire_whoami"}); err != nil {
		t.Errorf("after a cancelled call the server stopped serving: %v", err)
	}
}

type errString string

func (e errString) Error() string { return string(e) }
