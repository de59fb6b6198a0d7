// netstrata service map: draws what /api/stream sends (a service map and the newest flows),
// server-side filtered with observe's own filters. No framework, no build step: the page is
// small enough that plain DOM and SVG stay readable.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const CARD_W = 184, CARD_H = 54, COL_W = 300, ROW_H = 74, GROUP_PAD = 16, GROUP_HEAD = 30;
const GROUP_GAP = 26, MARGIN = 24;
const VERDICT_LABEL = {forwarded: "forwarded", dropped: "dropped", "l7-denied": "L7 denied", audit: "audit"};

const form = document.getElementById("filters");
const svg = document.getElementById("map-svg");
let stream = null;

// ------------------------------------------------------------------ filters <-> URL

function filterParams() {
  const params = new URLSearchParams();
  for (const el of form.elements) {
    if (el.name && el.value.trim() !== "") params.append(el.name, el.value.trim());
  }
  return params;
}

function loadFiltersFromURL() {
  const params = new URLSearchParams(window.location.search);
  for (const el of form.elements) {
    if (el.name && params.has(el.name)) el.value = params.get(el.name);
  }
}

function showError(text) {
  const box = document.getElementById("error");
  box.textContent = text || "";
  box.hidden = !text;
}

function setLive(state, text) {
  const live = document.getElementById("live");
  live.className = "live " + state;
  document.getElementById("live-text").textContent = text;
}

// Check the filters with a plain request first: an EventSource cannot read a 400's message.
async function connect() {
  const params = filterParams();
  const qs = params.toString();
  history.replaceState(null, "", qs ? "?" + qs : window.location.pathname);
  if (stream) { stream.close(); stream = null; }
  const probe = new URLSearchParams(params);
  probe.set("last", "1");
  const resp = await fetch("/api/flows?" + probe.toString());
  if (!resp.ok) {
    const body = await resp.json().catch(() => ({error: resp.statusText}));
    showError(body.error);
    setLive("off", "filter error");
    return;
  }
  showError("");
  stream = new EventSource("/api/stream?" + qs);
  stream.addEventListener("update", (ev) => {
    const data = JSON.parse(ev.data);
    render(data);
    setLive("on", "live · " + new Date().toLocaleTimeString());
  });
  stream.onerror = () => setLive("off", "reconnecting");
}

form.addEventListener("submit", (ev) => { ev.preventDefault(); connect(); });
form.addEventListener("change", (ev) => { if (ev.target.tagName === "SELECT") connect(); });
document.getElementById("clear").addEventListener("click", () => {
  for (const el of form.elements) if (el.name) el.value = "";
  connect();
});

function setFilters(values) {
  for (const el of form.elements) if (el.name) el.value = values[el.name] || "";
  connect();
}

// ------------------------------------------------------------------------ render

function render(data) {
  document.getElementById("counts").textContent =
    `${data.matched} of ${data.total} flows · ${data.map.nodes.length} workloads · ${data.map.edges.length} edges`;
  const namespaces = new Set(data.map.nodes.filter((n) => n.namespace).map((n) => n.namespace));
  const list = document.getElementById("namespaces");
  list.replaceChildren(...[...namespaces].sort().map((ns) => new Option(ns)));
  drawMap(data.map);
  drawTable(data.rows);
}

function el(name, attrs, parent) {
  const node = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  if (parent) parent.appendChild(node);
  return node;
}

// Columns follow the traffic: a node's rank is one more than the highest-ranked node sending
// to it (callers left, callees right, as in Hubble UI). Cycles stop growing after n passes.
function ranks(map) {
  const rank = new Map(map.nodes.map((n) => [n.id, 0]));
  const edges = map.edges.filter((e) => e.source !== e.destination);
  for (let pass = 0; pass < map.nodes.length; pass++) {
    let changed = false;
    for (const e of edges) {
      const want = Math.min(rank.get(e.source) + 1, map.nodes.length);
      if (want > rank.get(e.destination)) { rank.set(e.destination, want); changed = true; }
    }
    if (!changed) break;
  }
  return rank;
}

function layout(map) {
  const rank = ranks(map);
  const byGroup = new Map(map.groups.map((g) => [g, []]));
  for (const n of map.nodes) byGroup.get(n.group).push(n);
  const pos = new Map();
  const boxes = [];
  let y = MARGIN, width = 0;
  // Peers outside the clusters (group "") go last, as their own box.
  const order = [...map.groups.filter((g) => g !== ""), ...map.groups.filter((g) => g === "")];
  for (const group of order) {
    const perRank = new Map();
    for (const n of byGroup.get(group)) {
      const r = rank.get(n.id);
      const row = perRank.get(r) || 0;
      perRank.set(r, row + 1);
      pos.set(n.id, {x: MARGIN + GROUP_PAD + r * COL_W, y: y + GROUP_HEAD + GROUP_PAD + row * ROW_H});
    }
    const rows = Math.max(1, ...perRank.values());
    const maxRank = Math.max(0, ...perRank.keys());
    const h = GROUP_HEAD + 2 * GROUP_PAD + rows * ROW_H - (ROW_H - CARD_H);
    const w = 2 * GROUP_PAD + maxRank * COL_W + CARD_W;
    boxes.push({group, x: MARGIN, y, w, h});
    width = Math.max(width, MARGIN + w);
    y += h + GROUP_GAP;
  }
  // Groups share columns, so widen every box to the widest: columns line up across groups.
  for (const b of boxes) b.w = width - MARGIN;
  return {pos, boxes, width: width + MARGIN, height: y};
}

function groupTitle(group) {
  if (group === "") return "outside the cluster";
  const [cluster, ns] = group.split("/");
  return cluster ? `${ns}  ·  cluster ${cluster}` : ns;
}

function nodeSubtitle(n) {
  if (n.kind === "pod") return n.identity ? `identity ${n.identity}` : "pod";
  if (n.kind === "reserved") return `reserved identity ${n.identity}`;
  if (n.kind === "identity") return "no pod on record";
  return "address";
}

function drawMap(map) {
  svg.replaceChildren();
  document.getElementById("map-empty").hidden = map.nodes.length > 0;
  const {pos, boxes, width, height} = layout(map);
  svg.setAttribute("width", width);
  svg.setAttribute("height", height);
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  const defs = el("defs", {}, svg);
  for (const v of Object.keys(VERDICT_LABEL)) {
    const m = el("marker", {id: `arrow-${v}`, viewBox: "0 0 10 10", refX: 9, refY: 5,
      markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse"}, defs);
    el("path", {d: "M0,0 L10,5 L0,10 z", class: `arrowhead ${v}`}, m);
  }
  for (const b of boxes) {
    const g = el("g", {class: "group", "data-group": b.group}, svg);
    el("rect", {x: b.x, y: b.y, width: b.w, height: b.h, rx: 10}, g);
    el("text", {x: b.x + 14, y: b.y + 20, class: "group-title"}, g).textContent = groupTitle(b.group);
  }
  drawEdges(map, pos);
  for (const n of map.nodes) drawNode(n, pos.get(n.id));
}

function drawEdges(map, pos) {
  const layer = el("g", {class: "edges"}, svg);
  const labels = el("g", {class: "edge-labels"}, svg);
  const pairs = new Map();
  for (const e of map.edges) {
    const key = e.source + "\u0000" + e.destination;
    pairs.set(key, (pairs.get(key) || []).concat([e]));
  }
  for (const group of pairs.values()) {
    group.forEach((e, i) => {
      const off = (i - (group.length - 1) / 2) * 10;
      drawEdge(e, pos.get(e.source), pos.get(e.destination), off, layer, labels);
    });
  }
}

function edgePath(a, b, off) {
  const x1 = a.x + CARD_W, y1 = a.y + CARD_H / 2 + off;
  if (a === b) {  // a workload talking to itself: a loop on its right side
    return {d: `M${x1},${y1 - 8} C${x1 + 60},${y1 - 40} ${x1 + 60},${y1 + 40} ${x1},${y1 + 8}`,
            lx: x1 + 50, ly: y1};
  }
  let x2 = b.x, y2 = b.y + CARD_H / 2 + off;
  if (b.x <= a.x) {  // backwards or same column: leave right, come in from the right
    x2 = b.x + CARD_W;
    const bend = Math.max(a.x, b.x) + CARD_W + 70 + Math.abs(y2 - y1) / 6;
    return {d: `M${x1},${y1} C${bend},${y1} ${bend},${y2} ${x2 + 4},${y2}`,
            lx: bend - 18, ly: (y1 + y2) / 2};
  }
  const dx = Math.max(50, (x2 - x1) / 2);
  return {d: `M${x1},${y1} C${x1 + dx},${y1} ${x2 - dx},${y2} ${x2 - 4},${y2}`,
          lx: (x1 + x2) / 2, ly: (y1 + y2) / 2};
}

function drawEdge(e, a, b, off, layer, labels) {
  const {d, lx, ly} = edgePath(a, b, off);
  const g = el("g", {class: `edge ${e.verdict}`, "data-verdict": e.verdict,
    "data-source": e.source, "data-destination": e.destination, "data-count": e.count}, layer);
  el("path", {d, class: "edge-line", "marker-end": `url(#arrow-${e.verdict})`}, g);
  el("path", {d, class: "edge-hit"}, g);
  const detail = [`${VERDICT_LABEL[e.verdict]}: ${e.count} flow(s)`, ...e.ports, ...e.l7];
  el("title", {}, g).textContent = detail.join("\n");
  g.addEventListener("click", () => edgeClicked(e));
  const text = `${e.ports.slice(0, 2).join(", ")}${e.ports.length > 2 ? ", …" : ""} × ${e.count}`;
  const lg = el("g", {class: `edge-label ${e.verdict}`, transform: `translate(${lx},${ly + off * 1.8})`}, labels);
  const t = el("text", {x: 0, y: 4, "text-anchor": "middle"}, lg);
  t.textContent = text;
  const w = text.length * 6.2 + 12;
  lg.insertBefore(el("rect", {x: -w / 2, y: -9, width: w, height: 18, rx: 9}), t);
}

function drawNode(n, p) {
  const g = el("g", {class: `node ${n.kind}`, "data-node": n.id, transform: `translate(${p.x},${p.y})`}, svg);
  el("rect", {width: CARD_W, height: CARD_H, rx: 8, class: "card"}, g);
  el("rect", {width: 5, height: CARD_H, rx: 2, class: "stripe"}, g);
  const title = el("text", {x: 16, y: 22, class: "node-title"}, g);
  title.textContent = n.name.length > 24 ? n.name.slice(0, 23) + "…" : n.name;
  el("text", {x: 16, y: 41, class: "node-sub"}, g).textContent = nodeSubtitle(n);
  el("title", {}, g).textContent = [n.name, ...n.labels].join("\n");
  g.addEventListener("click", () => nodeClicked(n));
}

function podRef(n) { return n.kind === "pod" ? `${n.namespace}/${n.name}` : ""; }

function nodeClicked(n) {
  if (n.kind === "pod") setFilters({pod: podRef(n)});
  else if (n.identity) setFilters({q: `--identity ${n.identity}`});
}

function edgeClicked(e) {
  const verdict = {forwarded: "", dropped: "DROPPED", "l7-denied": "DROPPED", audit: "AUDIT"}[e.verdict];
  // pod:CLUSTER/NS/NAME -> NS/NAME, which observe's pod filters match as a prefix
  const ref = (id) => id.startsWith("pod:") ? id.slice(4).split("/").slice(1).join("/") : "";
  setFilters({"from-pod": ref(e.source), "to-pod": ref(e.destination), verdict});
}

// ------------------------------------------------------------------------ table

function cell(tr, text, cls) {
  const td = document.createElement("td");
  td.textContent = text;
  if (cls) td.className = cls;
  tr.appendChild(td);
  return td;
}

function drawTable(rows) {
  const body = document.querySelector("#flows tbody");
  const out = rows.map((r) => {
    const tr = document.createElement("tr");
    tr.dataset.verdictClass = r.verdict_class;
    tr.dataset.verdict = r.verdict;
    tr.title = r.summary;
    cell(tr, r.source);
    cell(tr, r.source_identity, "muted");
    cell(tr, r.destination);
    cell(tr, r.destination_identity, "muted");
    cell(tr, r.port);
    cell(tr, r.l7);
    const v = cell(tr, "");
    const badge = document.createElement("span");
    badge.className = `badge ${r.verdict_class}`;
    badge.textContent = r.verdict;
    v.appendChild(badge);
    cell(tr, r.type, "muted");
    cell(tr, r.drop_reason);
    cell(tr, r.node, "muted");
    cell(tr, r.time.replace("T", " ").replace("Z", ""), "muted nowrap");
    return tr;
  });
  body.replaceChildren(...out);
}

loadFiltersFromURL();
connect();
