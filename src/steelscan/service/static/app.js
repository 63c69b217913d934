// steelscan station dashboard: plain JS over the /v1 API, polling so the map and tables follow the line.
// Every piece of data reaches the page as text (textContent / text nodes), never as markup: class names,
// coil ids and rule lines come from outside.
"use strict";

// plots.class_colour's table (as RGB), so the dashboard and the coil report colour a class alike
const PALETTE = ["#ff3c3c", "#3cc83c", "#288cff", "#ffdc28", "#c83cc8", "#28c8c8", "#c87828", "#ff288c",
  "#a0ff78", "#a050ff"];
const state = { token: sessionStorage.getItem("steelscan-token") || "", coil: null, defect: null, busy: false,
  classNames: [], served: {} };
const $ = (sel) => document.querySelector(sel);

// The class's colour: one the API serves (`class_colours`), else its index in the model's classes
// (`class_names`) in the report's palette, else a bare ClassId ("3") as that index, else a hue hashed from
// the name: the same name always gets the same colour, whatever order classes appear in.
function colour(cls) {
  const name = String(cls);
  if (/^#[0-9a-f]{6}$/i.test(state.served[name] || "")) return state.served[name];
  let k = state.classNames.indexOf(name);
  if (k < 0 && !state.classNames.length && /^[1-9]\d*$/.test(name)) k = Number(name) - 1;
  if (k >= 0 && k < PALETTE.length) return PALETTE[k];
  let h = 2166136261;  // FNV-1a
  for (const ch of name) h = Math.imul(h ^ ch.codePointAt(0), 16777619) >>> 0;
  return `hsl(${h % 360}, 70%, ${45 + (h >>> 9) % 15}%)`;
}

// "class 3" for a bare ClassId (Severstal), the name itself for a named class ("scratches")
const label = (cls) => (/^\d+$/.test(String(cls)) ? `class ${cls}` : String(cls));

// An element with attributes (class, data-*, style object) and children (nodes, or text for anything else).
function el(tag, attrs = {}, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "style") Object.assign(e.style, v);
    else if (k === "class") e.className = v;
    else e.setAttribute(k, v);
  }
  for (const kid of kids) if (kid !== null && kid !== undefined) e.append(kid instanceof Node ? kid : String(kid));
  return e;
}

const swatch = (cls) => el("i", { class: "sw", style: { background: colour(cls) } });
const fixed = (v, n) => (typeof v === "number" && Number.isFinite(v) ? v.toFixed(n) : "");

async function api(path, asBlob = false) {
  const headers = state.token ? { Authorization: `Bearer ${state.token}` } : {};
  const res = await fetch(path, { headers });
  if (res.status === 401) {
    $("#token-form").hidden = false;
    throw new Error("token needed");
  }
  if (!res.ok) {
    const body = await res.json().catch(() => ({ error: res.statusText }));
    throw new Error(body.error || res.statusText);
  }
  return asBlob ? res.blob() : res.json();
}

async function refreshHealth() {
  try {
    const h = await fetch("/healthz").then((r) => r.json());
    $("#health").textContent = `model ${h.model}` + (h.rules ? ` · rules ${h.rules}` : "") +
      ` · queue ${h.queue} · up ${Math.round(h.uptime_s)} s` + (h.auth ? " · token required" : "");
    const warnings = Array.isArray(h.warnings) ? h.warnings : [];
    $("#warnings").replaceChildren(...warnings.map((w) => el("p", {}, `Warning: ${w}`)));
    $("#warnings").hidden = !warnings.length;
  } catch (e) {
    $("#health").textContent = "service unreachable";
  }
}

async function refreshCoils() {
  const { coils } = await api("/v1/coils?limit=100");
  $("#coil-list tbody").replaceChildren(...coils.map((c) => el("tr",
    { "data-coil": c.coil_id, class: c.coil_id === state.coil ? "selected" : "" },
    el("td", {}, c.coil_id), el("td", {}, c.status), el("td", {}, c.n_frames), el("td", {}, c.grade ? c.grade.grade : ""))));
  if (!state.coil && coils.length) selectCoil(coils[0].coil_id);
}

function selectCoil(id) {
  state.coil = id;
  state.defect = null;
  $("#defect-detail").hidden = true;
  $("#coil-view").hidden = false;
  document.querySelectorAll("#coil-list tr").forEach((tr) => tr.classList.toggle("selected", tr.dataset.coil === id));
  refreshCoil();
}

async function allDefects(id) {
  const out = [];
  for (let offset = 0; ; offset += 1000) {
    const page = await api(`/v1/coils/${encodeURIComponent(id)}/defects?limit=1000&offset=${offset}`);
    out.push(...page.defects);
    if (out.length >= page.total || !page.defects.length) return out;
  }
}

async function refreshCoil() {
  if (!state.coil || state.busy) return;
  state.busy = true;
  const id = state.coil;
  try {
    const [coil, defects] = await Promise.all([api(`/v1/coils/${encodeURIComponent(id)}`), allDefects(id)]);
    if (id !== state.coil) return;
    showCoil(coil);
    drawMap(coil, defects);
    await refreshTable(coil);
  } finally {
    state.busy = false;
  }
}

function showCoil(c) {
  if (Array.isArray(c.class_names)) state.classNames = c.class_names.map(String);
  if (c.class_colours && typeof c.class_colours === "object") state.served = c.class_colours;
  $("#coil-title").textContent = `Coil ${c.coil_id}`;
  const g = c.grade;
  const badge = $("#grade-badge");
  badge.textContent = g ? `${g.grade} ${g.passed ? "PASS" : "FAIL"}${c.grade_final ? "" : " (provisional)"}` : "no frames";
  badge.className = "badge " + (g ? (g.passed ? "pass" : "fail") : "");
  const geo = c.coil || {};
  $("#coil-facts").textContent = `${c.status} · ${c.n_frames} frames` +
    (geo.length_m ? ` · ${geo.length_m.toFixed(2)} m x ${geo.strip_width_mm} mm` : "") +
    ` · ${c.n_defects} defects` + (c.n_missing_frames ? ` · ${c.n_missing_frames} frames missing` : "");
  $("#decided-by").replaceChildren(...(g ? g.decided_by : []).map((s) => el("li", {}, s)));
  // the model's class order where the API serves it, else by name
  const order = (k) => (state.classNames.includes(k) ? state.classNames.indexOf(k) : state.classNames.length);
  const counts = Object.entries(c.counts_by_class).sort(([a], [b]) => order(a) - order(b) || (a < b ? -1 : a > b ? 1 : 0));
  const most = Math.max(1, ...counts.map(([, n]) => n));
  $("#counts tbody").replaceChildren(...counts.map(([k, n]) => el("tr", { "data-class": k },
    el("td", {}, swatch(k), label(k)), el("td", {}, n),
    el("td", {}, el("span", { class: "bar", style: { width: `${Math.round(120 * n / most)}px` } })))));
  $("#legend").replaceChildren(...counts.map(([k]) => el("span", {}, swatch(k), label(k))));
  const sel = $("#class-filter");
  const have = new Set([...sel.options].map((o) => o.value));
  counts.forEach(([k]) => { if (!have.has(k)) sel.add(new Option(label(k), k)); });
  showPeriodic(c.periodic);
}

// Periodic findings: one class repeating at a fixed pitch at one across position, the marks of a roll.
function showPeriodic(periodic) {
  const box = $("#periodic");
  if (!periodic.length) {
    box.replaceChildren("none found");
    return;
  }
  const head = el("tr", {}, ...["class", "pitch m", "roll Ø mm", "marks", "missing", "across mm", "first at m"]
    .map((h) => el("th", {}, h)));
  const rows = periodic.map((p) => el("tr", { "data-class": p.class_name },
    el("td", {}, swatch(p.class_name), label(p.class_name)), el("td", {}, fixed(p.pitch_m, 3)),
    el("td", {}, fixed(p.roll_diameter_m * 1000, 0)), el("td", {}, p.count), el("td", {}, p.missing),
    el("td", {}, fixed(p.across_mm, 0)), el("td", {}, fixed(p.first_along_m, 2))));
  box.replaceChildren(el("table", {}, el("thead", {}, head), el("tbody", {}, ...rows)));
}

function drawMap(c, defects) {
  const cv = $("#coil-map");
  const ctx = cv.getContext("2d");
  const W = cv.width, H = cv.height, L = 50, T = 10, R = 10, B = 28;
  ctx.clearRect(0, 0, W, H);
  const geo = c.coil;
  cv.dataset.defects = String(defects.length);
  if (!geo) return;
  const len = Math.max(geo.length_m, 1e-6), wid = geo.strip_width_mm;
  const x = (m) => L + (W - L - R) * m / len, y = (mm) => T + (H - T - B) * mm / wid;
  ctx.fillStyle = "#e9ecef";
  ctx.fillRect(L, T, W - L - R, H - T - B);
  ctx.fillStyle = "#333"; ctx.font = "11px sans-serif"; ctx.textAlign = "center";
  for (let i = 0; i <= 10; i++) ctx.fillText((len * i / 10).toFixed(len < 10 ? 2 : 1), x(len * i / 10), H - 10);
  ctx.textAlign = "right";
  for (let i = 0; i <= 4; i++) ctx.fillText(Math.round(wid * i / 4), L - 4, y(wid * i / 4) + 4);
  for (const d of defects) {
    const w = Math.max(2, x(d.length_mm / 1000) - L), h = Math.max(2, y(d.width_mm) - T);
    ctx.fillStyle = colour(d.class);
    ctx.globalAlpha = d.id === state.defect ? 1 : 0.8;
    ctx.fillRect(x(d.along_m) - w / 2, y(d.across_mm) - h / 2, w, h);
    if (d.id === state.defect) {
      ctx.strokeStyle = "#000"; ctx.lineWidth = 2;
      ctx.strokeRect(x(d.along_m) - w / 2 - 3, y(d.across_mm) - h / 2 - 3, w + 6, h + 6);
    }
  }
  ctx.globalAlpha = 1;
  ctx.setLineDash([4, 3]); ctx.strokeStyle = "#000"; ctx.lineWidth = 1;
  for (const p of c.periodic) {  // the marks of a roll: a dashed line through the group
    ctx.beginPath();
    ctx.moveTo(x(p.first_along_m), y(p.across_mm));
    ctx.lineTo(x(p.first_along_m + p.pitch_m * (p.count + p.missing - 1)), y(p.across_mm));
    ctx.stroke();
  }
  ctx.setLineDash([]);
}

async function refreshTable() {
  const cls = $("#class-filter").value, conf = parseFloat($("#conf-filter").value) || 0;
  const q = new URLSearchParams({ limit: "500", min_confidence: String(conf) });
  if (cls) q.set("class", cls);
  const page = await api(`/v1/coils/${encodeURIComponent(state.coil)}/defects?${q}`);
  $("#defect-total").textContent = `${page.total} shown` + (page.total > page.defects.length ? ` (first ${page.defects.length})` : "");
  $("#defect-table tbody").replaceChildren(...page.defects.map((d) => el("tr",
    { "data-id": d.id, "data-class": d.class, class: d.id === state.defect ? "selected" : "" },
    el("td", {}, d.id), el("td", {}, swatch(d.class), label(d.class)), el("td", {}, fixed(d.confidence, 2)),
    el("td", {}, fixed(d.along_m, 3)), el("td", {}, fixed(d.across_mm, 0)), el("td", {}, fixed(d.length_mm, 0)),
    el("td", {}, fixed(d.width_mm, 0)), el("td", {}, fixed(d.area_mm2, 0)), el("td", {}, d.frame))));
  state.rows = Object.fromEntries(page.defects.map((d) => [d.id, d]));
}

const DETAIL_KEYS = ["confidence", "detector_class", "detector_confidence", "classifier_confidence", "along_m",
  "across_mm", "length_mm", "width_mm", "area_mm2", "frame", "bbox", "frames"];

async function showDefect(id) {
  const d = state.rows[id];
  if (!d) return;
  state.defect = id;
  document.querySelectorAll("#defect-table tr").forEach((tr) => tr.classList.toggle("selected", tr.dataset.id === String(id)));
  $("#defect-detail").hidden = false;
  $("#detail-title").textContent = `Defect #${id}, ${label(d.class)}`;
  $("#detail-fields").replaceChildren(...DETAIL_KEYS.filter((k) => d[k] !== null && d[k] !== undefined).flatMap((k) => [
    el("dt", {}, k.replaceAll("_", " ")), el("dd", {}, Array.isArray(d[k]) ? d[k].join(", ") : d[k])]));
  const blob = await api(`/v1/coils/${encodeURIComponent(state.coil)}/defects/${id}/crop`, true);
  const img = $("#defect-crop");
  if (img.src.startsWith("blob:")) URL.revokeObjectURL(img.src);
  img.src = URL.createObjectURL(blob);
}

async function openReport(ev) {
  ev.preventDefault();
  const blob = await api(`/v1/coils/${encodeURIComponent(state.coil)}/report`, true);
  window.open(URL.createObjectURL(new Blob([blob], { type: "text/html" })), "_blank");
}

function quietly(fn) {
  return () => fn().catch((e) => { $("#health").textContent = `error: ${e.message}`; });
}

$("#coil-list").addEventListener("click", (ev) => {
  const tr = ev.target.closest("tr[data-coil]");
  if (tr) selectCoil(tr.dataset.coil);
});
$("#defect-table").addEventListener("click", (ev) => {
  const tr = ev.target.closest("tr[data-id]");
  if (tr) quietly(() => showDefect(Number(tr.dataset.id)))();
});
$("#class-filter").addEventListener("change", quietly(refreshTable));
$("#conf-filter").addEventListener("change", quietly(refreshTable));
$("#report-link").addEventListener("click", (ev) => quietly(() => openReport(ev))());
$("#token-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  state.token = $("#token").value.trim();
  sessionStorage.setItem("steelscan-token", state.token);
  $("#token-form").hidden = true;
  quietly(refreshCoils)();
});

refreshHealth();
quietly(refreshCoils)();
setInterval(refreshHealth, 5000);
setInterval(quietly(refreshCoils), 2000);
setInterval(quietly(refreshCoil), 1000);
