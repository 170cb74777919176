package mcp_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/wire-mesh/wire/diag"
	"github.com/wire-mesh/wire/node"
	"github.com/wire-mesh/wire/server/servertest"
	"github.com/wire-mesh/wire/wg"
	"github.com/wire-mesh/wire/wg/wgtest"
)

var wireBin string

func TestMain(m *testing.M) {
	tmp, err := os.MkdirTemp("", "wmbin")
	if err != nil {
		panic(err)
	}
	wireBin = filepath.Join(tmp, "wire")
	cmd := exec.Command("go", "build", "-o", wireBin, "..")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		os.RemoveAll(tmp)
		panic("building wire: " + err.Error())
	}
	code := m.Run()
	os.RemoveAll(tmp)
	os.Exit(code)
}

// shortDir is a state dir short enough for a unix socket path.
func shortDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "wm")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// startNode joins a node to env and runs its daemon on the fake engine.
func startNode(t *testing.T, env *servertest.Env, name string) (string, *node.Daemon) {
	t.Helper()
	dir := shortDir(t)
	ctx := context.Background()
	k := env.Key(t, false)
	if _, err := node.Join(ctx, node.JoinOptions{Dir: dir, ServerURL: env.URL(), JoinKey: k.String(), Name: name,
		Port: 51820, Interface: "wire-" + name, NodeID: "id-" + name}); err != nil {
		t.Fatalf("join %s: %v", name, err)
	}
	eng := wgtest.New("wire-" + name)
	eng.SetDiscover(netip.MustParseAddrPort("198.51.100.1:40001"), nil)
	d, err := node.New(node.Options{Dir: dir, NewEngine: func(wg.Options) (wg.Engine, error) { return eng, nil }})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(ctx)
	if err := d.Start(ctx); err != nil {
		cancel()
		t.Fatalf("start %s: %v", name, err)
	}
	done := make(chan struct{})
	go func() { d.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return dir, d
}

// connect runs wire mcp --state-dir dir and connects the SDK client.
func connect(t *testing.T, dir string, opts *sdk.ClientOptions) *sdk.ClientSession {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cmd := exec.Command(wireBin, "mcp", "--state-dir", dir)
	cmd.Stderr = &testLog{t}
	cs, err := sdk.NewClient(&sdk.Implementation{Name: "test", Version: "1"}, opts).Connect(ctx, &sdk.CommandTransport{Command: cmd}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cs.Close() })
	return cs
}

type testLog struct{ t *testing.T }

func (l *testLog) Write(b []byte) (int, error) {
	l.t.Logf("wire mcp: %s", strings.TrimSpace(string(b)))
	return len(b), nil
}

// call calls a tool and decodes its structured result into out.
func call(t *testing.T, cs *sdk.ClientSession, name string, args map[string]any, out any) *sdk.CallToolResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	res, err := cs.CallTool(ctx, &sdk.CallToolParams{Name: name, Arguments: args})
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	if res.IsError || out == nil {
		return res
	}
	b, err := json.Marshal(res.StructuredContent)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, out); err != nil {
		t.Fatalf("%s: structured content %s: %v", name, b, err)
	}
	if len(res.Content) != 1 {
		t.Fatalf("%s: %d content blocks, want the JSON as one text", name, len(res.Content))
	}
	text, ok := res.Content[0].(*sdk.TextContent)
	if !ok || !sameJSON(t, text.Text, string(b)) {
		t.Errorf("%s: text content %v is not the structured content %s", name, res.Content[0], b)
	}
	return res
}

func sameJSON(t *testing.T, a, b string) bool {
	var x, y any
	if json.Unmarshal([]byte(a), &x) != nil || json.Unmarshal([]byte(b), &y) != nil {
		return false
	}
	xb, _ := json.Marshal(x)
	yb, _ := json.Marshal(y)
	return string(xb) == string(yb)
}

func errorText(res *sdk.CallToolResult) string {
	var s []string
	for _, c := range res.Content {
		if t, ok := c.(*sdk.TextContent); ok {
			s = append(s, t.Text)
		}
	}
	return strings.Join(s, " ")
}

func TestToolsList(t *testing.T) {
	cs := connect(t, shortDir(t), nil)
	if ins := cs.InitializeResult().Instructions; !strings.Contains(ins, "never call wire_pair_confirm with digits you made up") ||
		!strings.Contains(ins, "the person typed") {
		t.Errorf("the instructions do not tell the assistant to leave the digits to the person: %q", ins)
	}
	res, err := cs.ListTools(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{ // tool -> readonly, writes (not destructive) or destructive
		"wire_status": "ro", "wire_peers": "ro", "wire_ping": "ro", "wire_install": "ro", "wire_diagnose": "ro",
		"wire_watchdog": "ro", "wire_whoami": "ro", "wire_netcheck": "ro", "wire_down": "destructive", "wire_up": "destructive",
		"wire_init": "writes", "wire_send": "writes", "wire_tail": "ro", "wire_verify": "ro",
		"wire_pair_initiate": "writes", "wire_pair_join": "writes", "wire_pair_check": "ro", "wire_pair_confirm": "writes",
	}
	got := map[string]bool{}
	for _, tool := range res.Tools {
		got[tool.Name] = true
		kind, ok := want[tool.Name]
		if !ok {
			t.Errorf("unexpected tool %s", tool.Name)
			continue
		}
		if tool.InputSchema == nil || tool.OutputSchema == nil {
			t.Errorf("%s: input schema %v, output schema %v", tool.Name, tool.InputSchema, tool.OutputSchema)
		}
		a := tool.Annotations
		switch {
		case a == nil:
			t.Errorf("%s: no annotations", tool.Name)
		case kind == "ro" && !a.ReadOnlyHint:
			t.Errorf("%s: readOnlyHint false", tool.Name)
		case kind == "destructive" && (a.ReadOnlyHint || a.DestructiveHint == nil || !*a.DestructiveHint):
			t.Errorf("%s: annotations %+v, want destructive", tool.Name, a)
		case kind == "writes" && (a.ReadOnlyHint || a.DestructiveHint == nil || *a.DestructiveHint):
			t.Errorf("%s: annotations %+v, want writes but not destructive", tool.Name, a)
		}
	}
	for name := range want {
		if !got[name] {
			t.Errorf("tool %s missing", name)
		}
	}
	ping := toolByName(res.Tools, "wire_ping")
	b, _ := json.Marshal(ping.InputSchema)
	if !strings.Contains(string(b), `"required":["target"]`) || !strings.Contains(string(b), `"count"`) {
		t.Errorf("wire_ping input schema %s", b)
	}
}

func toolByName(tools []*sdk.Tool, name string) *sdk.Tool {
	for _, t := range tools {
		if t.Name == name {
			return t
		}
	}
	return &sdk.Tool{}
}

func TestToolsAgainstNode(t *testing.T) {
	env := servertest.Start(t, "")
	dir, d := startNode(t, env, "a")
	cs := connect(t, dir, nil)
	cfg := d.Config()

	var st node.Status
	call(t, cs, "wire_status", nil, &st)
	if st.NodeName != "a" || st.VPNIP != cfg.VPNIP || st.Engine == "" || st.ServerURL != env.URL() {
		t.Errorf("wire_status: %+v, want node a at %s via %s", st, cfg.VPNIP, env.URL())
	}

	var peers struct {
		Peers []node.PeerStatus `json:"peers"`
	}
	call(t, cs, "wire_peers", nil, &peers)
	if len(peers.Peers) != 0 {
		t.Errorf("wire_peers on a lone node: %+v", peers.Peers)
	}

	var who map[string]any
	call(t, cs, "wire_whoami", nil, &who)
	keys, err := node.LoadKeys(dir)
	if err != nil {
		t.Fatal(err)
	}
	fp, _ := diag.Fingerprint(keys.WG.PublicKey().String())
	if who["node_name"] != "a" || who["vpn_ip"] != cfg.VPNIP || who["wg_public_key"] != keys.WG.PublicKey().String() ||
		len(fp) != 8 || who["fingerprint"] != fp || who["server_url"] != env.URL() || who["enrolled"] != true {
		t.Errorf("wire_whoami: %+v", who)
	}

	// On loopback the server's STUN and relay see this machine's own
	// address, the same for both.
	var nc diag.Netcheck
	call(t, cs, "wire_netcheck", nil, &nc)
	if !nc.HTTPS.OK || !nc.STUN.OK || !nc.Relay.OK || nc.STUN.Mapped != nc.Relay.Mapped || nc.NAT != diag.NATNone {
		t.Errorf("wire_netcheck on loopback: %+v", nc)
	}

	var install struct {
		Checks []node.Check `json:"checks"`
	}
	call(t, cs, "wire_install", nil, &install)
	if c := findCheck(install.Checks, "daemon"); !c.OK {
		t.Errorf("wire_install daemon check: %+v", c)
	}
	if c := findCheck(install.Checks, "server"); !c.OK {
		t.Errorf("wire_install server check: %+v", c)
	}

	var diag struct {
		Checks []node.Check `json:"checks"`
	}
	call(t, cs, "wire_diagnose", nil, &diag)
	for _, name := range []string{"engine", "server_reachable", "interface", "registered", "stun"} {
		c := findCheck(diag.Checks, name)
		if !c.OK {
			t.Errorf("wire_diagnose %s: %+v", name, c)
		}
	}
	if c, want := findCheck(diag.Checks, "stun"), fmt.Sprintf("%s:%d", st.PublicIP, st.NATPort); st.NATPort != 40001 || !strings.Contains(c.Finding, want) {
		t.Errorf("wire_diagnose stun finding %q, want the mapping %s (nat port 40001)", c.Finding, want)
	}

	var dog struct {
		Peers   []map[string]any `json:"peers"`
		Service struct {
			Daemon string `json:"daemon"`
		} `json:"service"`
	}
	call(t, cs, "wire_watchdog", nil, &dog)
	if dog.Service.Daemon != "running" || len(dog.Peers) != 0 {
		t.Errorf("wire_watchdog: %+v", dog)
	}

	res := call(t, cs, "wire_ping", map[string]any{"target": "nobody", "count": 1}, nil)
	if !res.IsError || !strings.Contains(errorText(res), "no such peer") {
		t.Errorf("wire_ping nobody: isError %v, %q", res.IsError, errorText(res))
	}

	// wire up on a node that is up runs the CLI, which says so, and
	// returns the status.
	st = node.Status{}
	call(t, cs, "wire_up", nil, &st)
	if st.VPNIP != cfg.VPNIP {
		t.Errorf("wire_up: %+v", st)
	}
}

// A client that asked for logs gets the server's, through MCP logging.
func TestLogsToClient(t *testing.T) {
	env := servertest.Start(t, "")
	dir, _ := startNode(t, env, "a")
	logs := make(chan *sdk.LoggingMessageParams, 16)
	cs := connect(t, dir, &sdk.ClientOptions{LoggingMessageHandler: func(_ context.Context, r *sdk.LoggingMessageRequest) {
		logs <- r.Params
	}})
	if err := cs.SetLoggingLevel(context.Background(), &sdk.SetLoggingLevelParams{Level: "info"}); err != nil {
		t.Fatal(err)
	}
	var st node.Status
	call(t, cs, "wire_up", nil, &st) // logs what wire up said
	select {
	case l := <-logs:
		if l.Logger != "wire" {
			t.Errorf("log message from logger %q, want wire", l.Logger)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no log message reached the client that asked for them")
	}
}

func findCheck(checks []node.Check, name string) node.Check {
	for _, c := range checks {
		if c.Name == name {
			return c
		}
	}
	return node.Check{Name: name, Finding: "missing"}
}

func TestNoDaemon(t *testing.T) {
	cs := connect(t, shortDir(t), nil)
	for _, tool := range []string{"wire_down", "wire_status", "wire_whoami"} {
		res := call(t, cs, tool, nil, nil)
		if !res.IsError || !strings.Contains(errorText(res), "daemon is not running") || !strings.Contains(errorText(res), "wire up") {
			t.Errorf("%s without a daemon: isError %v, %q", tool, res.IsError, errorText(res))
		}
	}
	var install struct {
		Checks []node.Check `json:"checks"`
	}
	call(t, cs, "wire_install", nil, &install)
	if c := findCheck(install.Checks, "config"); c.OK || c.Fix == "" {
		t.Errorf("wire_install config check on an empty dir: %+v", c)
	}
}

func TestSubscribePeers(t *testing.T) {
	env := servertest.Start(t, "")
	dir, _ := startNode(t, env, "a")
	updated := make(chan string, 10)
	cs := connect(t, dir, &sdk.ClientOptions{ResourceUpdatedHandler: func(_ context.Context, r *sdk.ResourceUpdatedNotificationRequest) {
		updated <- r.Params.URI
	}})
	ctx := context.Background()
	if err := cs.Subscribe(ctx, &sdk.SubscribeParams{URI: "wire://peers"}); err != nil {
		t.Fatal(err)
	}
	select {
	case uri := <-updated:
		t.Fatalf("update for %s before anything changed", uri)
	case <-time.After(time.Second):
	}
	startNode(t, env, "b")
	joined := time.Now()
	select {
	case uri := <-updated:
		if uri != "wire://peers" {
			t.Errorf("update for %s", uri)
		}
		t.Logf("update %v after b started", time.Since(joined))
	case <-time.After(3 * time.Second):
		t.Fatal("no notifications/resources/updated within 3s of b joining")
	}
	res, err := cs.ReadResource(ctx, &sdk.ReadResourceParams{URI: "wire://peers"})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Contents) != 1 || res.Contents[0].MIMEType != "application/json" || !strings.Contains(res.Contents[0].Text, `"node_name": "b"`) {
		t.Errorf("wire://peers after b joined: %+v", res.Contents)
	}
}

// rawServer runs wire mcp and speaks newline-delimited JSON-RPC to it.
type rawServer struct {
	t   *testing.T
	in  io.WriteCloser
	out *bufio.Scanner
}

func startRaw(t *testing.T, dir string) *rawServer {
	t.Helper()
	cmd := exec.Command(wireBin, "mcp", "--state-dir", dir)
	cmd.Stderr = &testLog{t}
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		in.Close()
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
	sc := bufio.NewScanner(out)
	sc.Buffer(nil, 4<<20)
	return &rawServer{t: t, in: in, out: sc}
}

func (r *rawServer) send(line string) {
	r.t.Helper()
	if _, err := io.WriteString(r.in, line+"\n"); err != nil {
		r.t.Fatal(err)
	}
}

// message is a JSON-RPC 2.0 message as read back.
type message struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      json.RawMessage `json:"id"`
	Method  string          `json:"method"`
	Result  json.RawMessage `json:"result"`
	Error   *struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// next reads the next stdout line, failing unless it is one valid
// JSON-RPC 2.0 message.
func (r *rawServer) next() message {
	r.t.Helper()
	lines := make(chan bool, 1)
	go func() { lines <- r.out.Scan() }()
	select {
	case ok := <-lines:
		if !ok {
			r.t.Fatalf("stdout ended: %v", r.out.Err())
		}
	case <-time.After(10 * time.Second):
		r.t.Fatal("no reply within 10s")
	}
	line := r.out.Bytes()
	var m message
	if err := json.Unmarshal(line, &m); err != nil || m.JSONRPC != "2.0" {
		r.t.Fatalf("stdout line is not one JSON-RPC 2.0 message: %q (%v)", line, err)
	}
	var v map[string]json.RawMessage
	json.Unmarshal(line, &v)
	for k := range v {
		switch k {
		case "jsonrpc", "id", "method", "params", "result", "error":
		default:
			r.t.Errorf("stdout line has member %q: %s", k, line)
		}
	}
	_, isReq := v["method"]
	_, hasResult := v["result"]
	_, hasError := v["error"]
	if isReq == (hasResult || hasError) || (hasResult && hasError) {
		r.t.Errorf("stdout line is neither a request, a notification nor a response: %s", line)
	}
	return m
}

// reply reads messages until the response with id, skipping notifications.
func (r *rawServer) reply(id int) message {
	r.t.Helper()
	for {
		m := r.next()
		if m.Method != "" {
			continue
		}
		if string(m.ID) == fmt.Sprint(id) || (id < 0 && string(m.ID) == "null") {
			return m
		}
		r.t.Fatalf("reply %s, want id %d", m.ID, id)
	}
}

func (r *rawServer) initialize() {
	r.t.Helper()
	r.send(`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}`)
	m := r.reply(1)
	var res struct {
		ProtocolVersion string `json:"protocolVersion"`
		Capabilities    struct {
			Resources struct {
				Subscribe bool `json:"subscribe"`
			} `json:"resources"`
		} `json:"capabilities"`
	}
	if m.Error != nil || json.Unmarshal(m.Result, &res) != nil {
		r.t.Fatalf("initialize: %+v", m)
	}
	if res.ProtocolVersion != "2025-06-18" || !res.Capabilities.Resources.Subscribe {
		r.t.Fatalf("initialize result %s, want protocol 2025-06-18 with resource subscriptions", m.Result)
	}
	r.send(`{"jsonrpc":"2.0","method":"notifications/initialized"}`)
}

func TestRawProtocol20250618(t *testing.T) {
	env := servertest.Start(t, "")
	dir, d := startNode(t, env, "a")
	r := startRaw(t, dir)
	r.initialize()

	r.send(`{"jsonrpc":"2.0","id":2,"method":"tools/list"}`)
	var list struct {
		Tools []struct{ Name string } `json:"tools"`
	}
	if m := r.reply(2); m.Error != nil || json.Unmarshal(m.Result, &list) != nil || len(list.Tools) != 18 {
		t.Fatalf("tools/list: %s, %v; want 18 tools", m.Result, m.Error)
	}

	r.send(`{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"wire_status","arguments":{}}}`)
	var call struct {
		IsError           bool        `json:"isError"`
		StructuredContent node.Status `json:"structuredContent"`
	}
	if m := r.reply(3); m.Error != nil || json.Unmarshal(m.Result, &call) != nil || call.IsError || call.StructuredContent.VPNIP != d.Config().VPNIP {
		t.Fatalf("tools/call wire_status: %+v %s", m, m.Result)
	}

	r.send(`{"jsonrpc":"2.0","id":4,"method":"resources/subscribe","params":{"uri":"wire://status"}}`)
	if m := r.reply(4); m.Error != nil {
		t.Fatalf("resources/subscribe: %+v", m.Error)
	}
}

func TestBadInput(t *testing.T) {
	r := startRaw(t, shortDir(t))
	r.initialize()
	for _, tc := range []struct {
		name, line string
		id, code   int
	}{
		{"malformed JSON", `{"jsonrpc":"2.0","id":5,"method":`, -1, -32700},
		{"not JSON-RPC", `{"hello":"world"}`, -1, -32600},
		{"unknown method", `{"jsonrpc":"2.0","id":6,"method":"wire/nope"}`, 6, -32601},
		{"wrong argument type", `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"wire_ping","arguments":{"target":"b","count":"three"}}}`, 7, -32602},
		{"missing argument", `{"jsonrpc":"2.0","id":8,"method":"tools/call","params":{"name":"wire_ping","arguments":{}}}`, 8, -32602},
		{"unknown tool", `{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"wire_nope","arguments":{}}}`, 9, -32602},
	} {
		r.send(tc.line)
		m := r.reply(tc.id)
		if m.Error == nil || m.Error.Code != tc.code {
			t.Errorf("%s: got %+v %s, want error %d", tc.name, m.Error, m.Result, tc.code)
		}
		r.send(`{"jsonrpc":"2.0","id":100,"method":"tools/list"}`)
		if m := r.reply(100); m.Error != nil || len(m.Result) == 0 {
			t.Fatalf("tools/list after %s: %+v", tc.name, m)
		}
	}
}
