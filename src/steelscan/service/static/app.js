// steelscan station dashboard: plain JS over the /v1 API, polling so the map and tables follow the line.
"use strict";

const COLOURS = { "1": "#ff3c3c", "2": "#3cc83c", "3": "#288cff", "4": "#ffdc28" };
const EXTRA = ["#b450c8", "#787878", "#a07828", "#3cc8c8", "#14288c", "#c86414"];
const state = { token: sessionStorage.getItem("steelscan-token") || "", coil: null, defect: null, busy: false };
const $ = (sel) => document.querySelector(sel);

function colour(cls) {
  if (!(cls in COLOURS)) COLOURS[cls] = EXTRA[(Object.keys(COLOURS).length - 4) % EXTRA.length];
  return COLOURS[cls];
}

function esc(v) {
  return String(v ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
}

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
    $("#health").textContent = `model ${h.model} · queue ${h.queue} · up ${Math.round(h.uptime_s)} s` +
      (h.auth ? " · token required" : "");
  } catch (e) {
    $("#health").textContent = "service unreachable";
  }
}

async function refreshCoils() {
  const { coils } = await api("/v1/coils?limit=100");
  $("#coil-list tbody").innerHTML = coils.map((c) => `
    <tr data-coil="${esc(c.coil_id)}" class="${c.coil_id === state.coil ? "selected" : ""}">
      <td>${esc(c.coil_id)}</td><td>${esc(c.status)}</td><td>${c.n_frames}</td>
      <td>${c.grade ? esc(c.grade.grade) : ""}</td></tr>`).join("");
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
  $("#coil-title").textContent = `Coil ${c.coil_id}`;
  const g = c.grade;
  const badge = $("#grade-badge");
  badge.textContent = g ? `${g.grade} ${g.passed ? "PASS" : "FAIL"}${c.grade_final ? "" : " (provisional)"}` : "no frames";
  badge.className = "badge " + (g ? (g.passed ? "pass" : "fail") : "");
  const geo = c.coil || {};
  $("#coil-facts").textContent = `${c.status} · ${c.n_frames} frames` +
    (geo.length_m ? ` · ${geo.length_m.toFixed(2)} m x ${geo.strip_width_mm} mm` : "") +
    ` · ${c.n_defects} defects` + (c.n_missing_frames ? ` · ${c.n_missing_frames} frames missing` : "");
  $("#decided-by").innerHTML = (g ? g.decided_by : []).map((s) => `<li>${esc(s)}</li>`).join("");
  const counts = Object.entries(c.counts_by_class).sort();
  const most = Math.max(1, ...counts.map(([, n]) => n));
  $("#counts tbody").innerHTML = counts.map(([k, n]) => `<tr data-class="${esc(k)}"><td><i style="background:${colour(k)}"></i>${esc(k)}</td>
    <td>${n}</td><td><span class="bar" style="width:${Math.round(120 * n / most)}px"></span></td></tr>`).join("");
  $("#legend").innerHTML = counts.map(([k]) => `<span><i style="background:${colour(k)}"></i>class ${esc(k)}</span>`).join("");
  const sel = $("#class-filter");
  const have = new Set([...sel.options].map((o) => o.value));
  counts.forEach(([k]) => { if (!have.has(k)) sel.add(new Option(k, k)); });
  $("#periodic").innerHTML = c.periodic.length ? `<table><thead><tr><th>class</th><th>pitch m</th><th>roll Ø mm</th>
    <th>marks</th><th>across mm</th></tr></thead><tbody>${c.periodic.map((p) => `<tr><td>${esc(p.class_name)}</td>
    <td>${p.pitch_m.toFixed(3)}</td><td>${Math.round(p.roll_diameter_m * 1000)}</td><td>${p.count}</td>
    <td>${Math.round(p.across_mm)}</td></tr>`).join("")}</tbody></table>` : "none found";
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
  $("#defect-table tbody").innerHTML = page.defects.map((d) => `
    <tr data-id="${d.id}" data-class="${esc(d.class)}" class="${d.id === state.defect ? "selected" : ""}">
      <td>${d.id}</td><td><i style="display:inline-block;width:10px;height:10px;background:${colour(d.class)}"></i> ${esc(d.class)}</td>
      <td>${d.confidence.toFixed(2)}</td><td>${d.along_m.toFixed(3)}</td><td>${d.across_mm.toFixed(0)}</td>
      <td>${d.length_mm.toFixed(0)}</td><td>${d.width_mm.toFixed(0)}</td><td>${d.area_mm2.toFixed(0)}</td>
      <td>${d.frame}</td></tr>`).join("");
  state.rows = Object.fromEntries(page.defects.map((d) => [d.id, d]));
}

async function showDefect(id) {
  const d = state.rows[id];
  if (!d) return;
  state.defect = id;
  document.querySelectorAll("#defect-table tr").forEach((tr) => tr.classList.toggle("selected", tr.dataset.id === String(id)));
  $("#defect-detail").hidden = false;
  $("#detail-title").textContent = `Defect #${id}, class ${d.class}`;
  $("#detail-fields").innerHTML = ["confidence", "along_m", "across_mm", "length_mm", "width_mm", "area_mm2", "frame", "bbox", "frames"]
    .map((k) => `<dt>${k}</dt><dd>${esc(Array.isArray(d[k]) ? d[k].join(", ") : d[k])}</dd>`).join("");
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
