// wire's dashboard: the mesh as a map and a table, kept live by the
// server's events, and its join keys and nodes to manage. No framework:
// the DOM, fetch and EventSource.
"use strict";

let csrf = "";
let events = null;
const $ = (id) => document.getElementById(id);
const svgNS = "http://www.w3.org/2000/svg";

// api calls the dashboard's API; a change carries the CSRF token.
async function api(method, path, body) {
  const opts = { method, headers: {}, credentials: "same-origin" };
  if (body !== undefined) {
    opts.headers["Content-Type"] = "application/json";
    opts.headers["X-Wire-CSRF"] = csrf;
    opts.body = JSON.stringify(body);
  }
  const resp = await fetch(path, opts);
  const data = await resp.json().catch(() => ({}));
  if (!resp.ok) {
    const err = new Error(data.error || resp.statusText);
    err.status = resp.status;
    throw err;
  }
  return data;
}

function show(loggedIn) {
  $("login").classList.toggle("hidden", loggedIn);
  $("app").classList.toggle("hidden", !loggedIn);
  $("logout").classList.toggle("hidden", !loggedIn);
}

async function start() {
  try {
    const st = await api("GET", "/api/state");
    csrf = st.csrf;
    show(true);
    render(st);
    listen();
  } catch (e) {
    show(false);
    if (e.status !== 401) $("login-error").textContent = e.message;
  }
}

// listen renders every state the server sends, as the mesh changes.
function listen() {
  if (events) events.close();
  events = new EventSource("/api/events");
  events.onmessage = (m) => render(JSON.parse(m.data));
}

function render(st) {
  const online = st.nodes.filter((n) => n.online).length;
  $("summary").textContent = `${st.nodes.length} nodes, ${online} online`;
  renderMap(st.nodes);
  renderNodes(st.nodes);
  renderKeys(st.keys);
}

// pathOf is how a and b reach each other: relay if either says it
// reaches the other through the relay, direct if both are online.
function pathOf(a, b) {
  if (!a.online || !b.online) return "none";
  const relayed = (x, y) => (x.relayed || []).includes(y.node_id);
  return relayed(a, b) || relayed(b, a) ? "relay" : "direct";
}

const maxPairsDrawn = 60; // nodes beyond which pairs are not drawn

function renderMap(nodes) {
  const svg = $("map");
  svg.replaceChildren();
  const c = 300, r = nodes.length > 1 ? 230 : 0;
  const at = nodes.map((n, i) => {
    const a = (2 * Math.PI * i) / Math.max(nodes.length, 1) - Math.PI / 2;
    return [c + r * Math.cos(a), c + r * Math.sin(a)];
  });
  const drawPairs = nodes.length <= maxPairsDrawn;
  if (drawPairs) {
    for (let i = 0; i < nodes.length; i++) {
      for (let j = i + 1; j < nodes.length; j++) {
        const path = pathOf(nodes[i], nodes[j]);
        if (path === "none") continue;
        const l = document.createElementNS(svgNS, "line");
        l.setAttribute("x1", at[i][0]); l.setAttribute("y1", at[i][1]);
        l.setAttribute("x2", at[j][0]); l.setAttribute("y2", at[j][1]);
        l.setAttribute("class", path);
        l.dataset.pair = `${nodes[i].node_name} ${nodes[j].node_name}`;
        svg.appendChild(l);
      }
    }
  }
  nodes.forEach((n, i) => {
    const g = document.createElementNS(svgNS, "g");
    g.setAttribute("class", "node " + (n.online ? "online" : "offline"));
    const dot = document.createElementNS(svgNS, "circle");
    dot.setAttribute("cx", at[i][0]); dot.setAttribute("cy", at[i][1]); dot.setAttribute("r", 9);
    const label = document.createElementNS(svgNS, "text");
    label.setAttribute("x", at[i][0]); label.setAttribute("y", at[i][1] - 14);
    label.textContent = n.node_name;
    const title = document.createElementNS(svgNS, "title");
    title.textContent = `${n.node_name} ${n.vpn_ip}`;
    g.append(title, dot, label);
    svg.appendChild(g);
  });
  $("map-note").textContent = drawPairs ? "" : `${nodes.length} nodes: pairs are not drawn beyond ${maxPairsDrawn}.`;
}

function cell(tr, text) {
  const td = document.createElement("td");
  td.textContent = text;
  tr.appendChild(td);
  return td;
}

function button(td, label, action) {
  const b = document.createElement("button");
  b.textContent = label;
  b.dataset.action = label.toLowerCase();
  b.addEventListener("click", action);
  td.appendChild(b);
}

function ago(when) {
  const s = Math.max(0, Math.round((Date.now() - Date.parse(when)) / 1000));
  if (s < 60) return `${s}s ago`;
  if (s < 3600) return `${Math.floor(s / 60)}m ago`;
  if (s < 172800) return `${Math.floor(s / 3600)}h ago`;
  return `${Math.floor(s / 86400)}d ago`;
}

const day = (t) => (t ? t.replace("T", " ").replace(/:\d\dZ$/, "Z") : "never");

function renderNodes(nodes) {
  const body = $("nodes").querySelector("tbody");
  body.replaceChildren();
  for (const n of nodes) {
    const expired = n.expires && Date.parse(n.expires) <= Date.now();
    const state = expired ? "expired" : n.online ? "online" : "offline";
    const tr = document.createElement("tr");
    tr.className = state;
    tr.dataset.node = n.node_name;
    cell(tr, n.node_name);
    cell(tr, n.vpn_ip);
    cell(tr, n.tags.join(" ") || "-");
    cell(tr, state + (n.relay ? ", on the relay" : ""));
    cell(tr, ago(n.last_seen));
    cell(tr, n.version || "-");
    cell(tr, n.endpoint || "-");
    cell(tr, day(n.expires));
    const td = cell(tr, "");
    td.className = "actions";
    button(td, "Rename", () => rename(n.node_name));
    button(td, "Expire", () => confirmed(`Expire ${n.node_name}? It leaves the mesh until it authenticates again.`, "/api/nodes/expire", { name: n.node_name }));
    button(td, "Remove", () => confirmed(`Remove ${n.node_name}? Its key stops working and its address is freed.`, "/api/nodes/remove", { name: n.node_name }));
    body.appendChild(tr);
  }
}

function renderKeys(keys) {
  const body = $("keys").querySelector("tbody");
  body.replaceChildren();
  for (const k of keys) {
    const tr = document.createElement("tr");
    tr.dataset.key = k.id;
    cell(tr, k.id);
    cell(tr, k.reusable ? "reusable" : "single-use");
    cell(tr, k.state);
    cell(tr, String(k.uses));
    cell(tr, day(k.created_at));
    cell(tr, day(k.expires_at));
    cell(tr, k.node_ttl ? `after ${Math.round(k.node_ttl / 86400)}d` : "never");
    cell(tr, (k.tags || []).join(" ") || "-");
    const td = cell(tr, "");
    td.className = "actions";
    button(td, "Revoke", () => confirmed(`Revoke key ${k.id}? It admits no more nodes.`, "/api/keys/revoke", { id: k.id }));
    body.appendChild(tr);
  }
}

async function change(path, body) {
  $("error").textContent = "";
  try {
    const res = await api("POST", path, body);
    render(await api("GET", "/api/state"));
    return res;
  } catch (e) {
    $("error").textContent = e.message;
    return null;
  }
}

function confirmed(question, path, body) {
  if (window.confirm(question)) change(path, body);
}

function rename(name) {
  const to = window.prompt(`New name for ${name}:`, name);
  if (to && to !== name) change("/api/nodes/rename", { name, new_name: to });
}

$("login-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  $("login-error").textContent = "";
  try {
    const res = await api("POST", "/login", { token: $("token").value });
    csrf = res.csrf;
    $("token").value = "";
    start();
  } catch (err) {
    $("login-error").textContent = err.message;
  }
});

$("logout").addEventListener("click", async () => {
  if (events) events.close();
  await api("POST", "/logout", {}).catch(() => {});
  show(false);
});

$("key-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const tags = $("key-tags").value.split(/[\s,]+/).filter(Boolean);
  const res = await change("/api/keys", {
    reusable: $("key-reusable").checked,
    ttl_seconds: Number($("key-ttl").value),
    tags,
    expire_seconds: Number($("key-expire").value),
  });
  if (res) {
    $("new-key-value").textContent = res.key;
    $("new-key").classList.remove("hidden");
  }
});

start();
