// trapd setup page: live view, walk test, health, clock, position, config (deployment: deployment.js).
"use strict";

const $ = (id) => document.getElementById(id);
const VIEW_INTERVAL_MS = 250;          // a few frames a second
const HEALTH_INTERVAL_MS = 10000;
const MAX_EDGES = 50;

function show(id, text, good) {
  const el = $(id);
  el.textContent = text;
  el.className = "status " + (good === undefined ? "" : good ? "ok" : "bad");
}

async function api(path, body) {
  const options = body === undefined ? { cache: "no-store" } : {
    method: "POST", cache: "no-store",
    headers: { "Content-Type": "application/json" },
    body: typeof body === "string" ? body : JSON.stringify(body),
  };
  const response = await fetch(path, options);
  if (response.status === 401) { location.href = "/login"; throw new Error("login required"); }
  const reply = await response.json();
  if (!response.ok && response.status !== 422) throw new Error(reply.error || response.statusText);
  return reply;
}

function trapTime(wallNs) {
  const d = new Date(Number(BigInt(wallNs) / 1000000n));
  return d.toLocaleTimeString([], { hour12: false }) + "." + String(d.getMilliseconds()).padStart(3, "0");
}

// --- live view --------------------------------------------------------------
const view = { canvas: null, ctx: null };

function drawOverlay(ctx, w, h, overlay, night) {
  if ($("show-overlay").checked && overlay) {
    ctx.fillStyle = "rgba(40, 40, 40, 0.55)";
    ctx.strokeStyle = "#bbb";
    // the masks' own polygons where the daemon sends them, else their boxes
    const polygons = overlay.mask_polygons || (overlay.masks || []).map(
      ([x0, y0, x1, y1]) => [[x0, y0], [x1, y0], [x1, y1], [x0, y1]]);
    for (const polygon of polygons) {
      ctx.beginPath();
      polygon.forEach(([x, y], i) => (i ? ctx.lineTo(x * w, y * h) : ctx.moveTo(x * w, y * h)));
      ctx.closePath();
      ctx.fill();
      ctx.stroke();
    }
    const box = overlay.smallest_animal;
    if (box) {
      ctx.lineWidth = 3;
      ctx.strokeStyle = "#ffae00";
      ctx.strokeRect(box[0] * w, box[1] * h, (box[2] - box[0]) * w, (box[3] - box[1]) * h);
      ctx.fillStyle = "#ffae00";
      ctx.font = "bold 18px system-ui";
      ctx.fillText("smallest animal", box[0] * w, Math.max(18, box[1] * h - 6));
    }
  }
  ctx.font = "bold 22px system-ui";
  ctx.fillStyle = night ? "#9ec9ff" : "#ffe27a";
  ctx.fillText(night ? "NIGHT" : "DAY", 10, 28);
}

async function showFrame() {
  const response = await fetch("/api/preview.jpg", { cache: "no-store" });
  if (response.status === 401) { location.href = "/login"; return; }
  if (!response.ok) throw new Error((await response.json()).error || response.statusText);
  const overlay = JSON.parse(response.headers.get("X-Overlay") || "{}");
  const night = response.headers.get("X-Night") === "1";
  const image = await createImageBitmap(await response.blob());
  const { canvas, ctx } = view;
  if (canvas.width !== image.width || canvas.height !== image.height) {
    canvas.width = image.width;
    canvas.height = image.height;
  }
  ctx.drawImage(image, 0, 0);
  drawOverlay(ctx, canvas.width, canvas.height, overlay, night);
  canvas.dataset.seq = response.headers.get("X-Seq");
  const age = (Date.now() - Number(BigInt(response.headers.get("X-Wall-Ns")) / 1000000n)) / 1000;
  show("view-status", `frame ${canvas.dataset.seq}, ${night ? "night" : "day"}` +
       (Math.abs(age) < 60 ? `, ${age.toFixed(1)} s old` : ""));
}

async function liveView() {
  view.canvas = $("view");
  view.ctx = view.canvas.getContext("2d");
  for (;;) {
    if (!document.hidden) {
      try { await showFrame(); } catch (e) { show("view-status", "no view: " + e.message, false); }
    }
    await new Promise((r) => setTimeout(r, VIEW_INTERVAL_MS));
  }
}

// --- walk test ----------------------------------------------------------------
function onEdge(edge) {
  const li = document.createElement("li");
  li.dataset.seq = edge.seq;
  li.dataset.wallNs = edge.wall_ns;
  li.className = "fresh";
  li.textContent = `PIR edge at ${trapTime(edge.wall_ns)}` + (edge.event_id ? ` (event ${edge.event_id})` : "");
  const list = $("edges");
  list.prepend(li);
  while (list.children.length > MAX_EDGES) list.lastChild.remove();
  // the moment it is on screen: after the next paint
  requestAnimationFrame(() => { li.dataset.shownMs = String(Date.now()); });
  setTimeout(() => li.classList.remove("fresh"), 3000);
}

function thumbnails(files) {
  const box = document.createElement("div");
  box.className = "thumbs";
  for (const file of files || []) {
    const img = document.createElement("img");
    img.src = "/api/image?path=" + encodeURIComponent(file);
    img.alt = file;
    img.loading = "lazy";
    box.append(img);
  }
  return box;
}

function onEvent(event) {
  const div = document.createElement("div");
  div.className = "event";
  div.dataset.eventId = event.event_id;
  const title = document.createElement("p");
  title.textContent = `Event ${event.event_id}: kept ${event.kept} of ${event.frames} frames`;
  div.append(title, thumbnails(event.files));
  $("events").prepend(div);
  while ($("events").children.length > 5) $("events").lastChild.remove();
}

function walkTest() {
  const source = new EventSource("/api/stream");
  source.addEventListener("edge", (m) => onEdge(JSON.parse(m.data)));
  source.addEventListener("event", (m) => onEvent(JSON.parse(m.data)));
  source.onopen = () => { document.body.dataset.stream = "open"; };
}

// --- health and clock -----------------------------------------------------------
const HEALTH_ROWS = [
  ["station", (h) => h.station_id],
  ["deployment", (h) => `${h.deployment_id}, since ${h.deployment_start || "?"}`],
  ["clock", (h) => h.clock_synced === true ? "synchronised" : h.clock_synced === false ? "NOT synchronised" : "unknown"],
  ["free space", (h) => `${h.free_mb} MB` + (h.days_left == null ? ", days left unknown (no images in the last 7 days)" : `, ${Math.round(h.days_left)} days at the current rate`)],
  ["battery", (h) => h.battery_v == null ? "no sensor" : `${h.battery_v} V` + (h.battery_trend_v_per_day == null ? ", trend unknown" : ` (${h.battery_trend_v_per_day > 0 ? "+" : ""}${h.battery_trend_v_per_day} V/day)`)],
  ["temperatures", (h) => `CPU ${h.cpu_temperature_c ?? "?"} °C, air ${h.ambient_temperature_c ?? "?"} °C`],
  ["not offloaded", (h) => h.images_not_offloaded],
  ["not synced", (h) => h.images_not_synced ?? "no fleet"],
  ["fleet link", (h) => h.fleet_link],
  ["day/night", (h) => h.day_night],
  ["power", (h) => h.power_mode],
  ["degraded", (h) => Object.keys(h.degraded || {}).length ? Object.entries(h.degraded).map(([s, w]) => `${s}: ${w}`).join("; ") : "none"],
];

function renderHealth(h) {
  const dl = $("health");
  dl.replaceChildren();
  for (const [name, value] of HEALTH_ROWS) {
    const dt = document.createElement("dt");
    const dd = document.createElement("dd");
    dt.textContent = name;
    try { dd.textContent = String(value(h)); } catch (e) { dd.textContent = "?"; }
    if (name === "degraded" && dd.textContent !== "none") dd.className = "bad";
    if (name === "clock" && h.clock_synced === false) dd.className = "bad";
    dd.dataset.field = name;
    dl.append(dt, dd);
  }
  const last = $("last-events");
  last.replaceChildren();
  for (const e of h.last_events || []) {
    const p = document.createElement("p");
    p.textContent = `event ${e.event_id} ${e.time} (${e.trigger}), ${e.kept} kept`;
    last.append(p, thumbnails((e.files || []).slice(0, 3)));
  }
}

function renderOffset(trapMs, phoneMs) {
  const offset = (trapMs - phoneMs) / 1000;
  const size = Math.abs(offset);
  const text = size < 1 ? "matches this phone's clock (within 1 s)"
    : `is ${size.toFixed(1)} s ${offset < 0 ? "behind" : "ahead of"} this phone's clock`;
  $("clock-offset").textContent = "The trap's clock " + text;
  $("clock-offset").dataset.offsetS = offset.toFixed(3);
  $("clock-offset").className = size < 2 ? "ok" : "bad";
}

async function refreshHealth() {
  try {
    const sent = Date.now();
    const reply = await api("/api/health");
    const received = Date.now();
    renderHealth(reply.health);
    renderOffset(Number(BigInt(reply.health.trap_wall_ns) / 1000000n), (sent + received) / 2);
    renderDeployment(reply.health);     // deployment.js
    $("title").textContent = `trapd setup: ${reply.health.station_id}`;
    const until = reply.mode.until_wall_ns;
    $("mode").textContent = until ? `setup mode until ${trapTime(until)} (trap time)` : "setup mode on";
  } catch (e) {
    $("clock-offset").textContent = "health not available: " + e.message;
  }
}

async function setClock() {
  const now = new Date();
  if (!confirm(`Set the trap's clock to this phone's time, ${now.toLocaleString()}?\n` +
               "It is recorded as a clock step, so exports stay honest.")) return;
  try {
    const ms = Date.now();
    const reply = await api("/api/clock", `{"wall_ns": ${ms}000000, "confirmed_by": "setup page"}`);
    show("clock-result", `Clock set: stepped by ${(reply.step_ns / 1e9).toFixed(3)} s`, true);
    $("clock-result").dataset.stepNs = reply.step_ns;
    refreshHealth();
  } catch (e) { show("clock-result", "not set: " + e.message, false); }
}

// --- position -------------------------------------------------------------------
function readGps() {
  if (!window.isSecureContext || !navigator.geolocation) {
    $("gps-note").textContent = "This browser gives the GPS only to https pages: read the " +
      "position and its accuracy from the phone's map or GPS app and type them in.";
    return;
  }
  show("position-result", "reading the GPS…");
  navigator.geolocation.getCurrentPosition((p) => {
    $("latitude").value = p.coords.latitude.toFixed(6);
    $("longitude").value = p.coords.longitude.toFixed(6);
    $("accuracy").value = Math.max(1, Math.round(p.coords.accuracy));
    show("position-result", `GPS fix, ±${Math.round(p.coords.accuracy)} m: check it, then write it`, true);
  }, (e) => show("position-result", "no GPS fix: " + e.message, false),
  { enableHighAccuracy: true, timeout: 30000, maximumAge: 0 });
}

async function savePosition() {
  const lat = Number($("latitude").value), lon = Number($("longitude").value);
  const acc = Number($("accuracy").value);
  if (!$("latitude").value || !$("longitude").value || !$("accuracy").value ||
      [lat, lon, acc].some(Number.isNaN)) {
    show("position-result", "latitude, longitude and accuracy are needed", false);
    return;
  }
  if (!confirm(`Write this station's position:\n${lat}, ${lon} (±${Math.round(acc)} m)?`)) return;
  showWrite("position-result", await api("/api/location", { latitude: lat, longitude: lon, accuracy_m: acc }));
  loadConfig();
}

// --- config.yaml ----------------------------------------------------------------
function showWrite(id, reply) {
  const box = $(id);
  box.replaceChildren();
  box.className = "status " + (reply.ok && (!reply.reload || reply.reload.ok) ? "ok" : "bad");
  if (!reply.ok) {
    const p = document.createElement("p");
    p.textContent = `${reply.problems.length} problem(s); nothing was written:`;
    box.append(p);
    for (const problem of reply.problems) {
      const b = document.createElement("button");
      b.type = "button";
      b.className = "problem";
      b.textContent = problem.message;
      if (problem.line) { b.dataset.line = problem.line; b.onclick = () => goToLine(problem.line); }
      box.append(b);
    }
    return;
  }
  const lines = [];
  if (reply.reload) lines.push(`Written (the old file is ${reply.previous}). ` +
    `Reload: ${reply.reload.ok ? "applied" : "REFUSED"}: ${reply.reload.message}`);
  else lines.push("OK: check-config finds no problem.");
  for (const w of reply.warnings || []) lines.push(w);
  for (const line of lines) { const p = document.createElement("p"); p.textContent = line; box.append(p); }
}

function goToLine(line) {
  const area = $("config-text");
  const lines = area.value.split("\n");
  const start = lines.slice(0, line - 1).join("\n").length + (line > 1 ? 1 : 0);
  area.focus();
  area.setSelectionRange(start, start + (lines[line - 1] || "").length);
  area.scrollTop = Math.max(0, (line - 4) * 20);
}

async function loadConfig() {
  const reply = await api("/api/config");
  $("config-text").value = reply.text;
}

async function checkConfig() {
  showWrite("config-result", await api("/api/config/check", { text: $("config-text").value }));
}

async function applyConfig() {
  if (!confirm("Write this config.yaml and reload the trap with it?")) return;
  $("apply-config").disabled = true;
  try { showWrite("config-result", await api("/api/config", { text: $("config-text").value })); }
  catch (e) { show("config-result", e.message, false); }
  finally { $("apply-config").disabled = false; refreshHealth(); }
}

window.addEventListener("DOMContentLoaded", () => {
  $("refresh-health").onclick = refreshHealth;
  $("set-clock").onclick = setClock;
  $("use-gps").onclick = readGps;
  $("save-position").onclick = savePosition;
  $("check-config").onclick = checkConfig;
  $("apply-config").onclick = applyConfig;
  if (!window.isSecureContext) readGps();
  walkTest();
  liveView();
  refreshHealth();
  setInterval(refreshHealth, HEALTH_INTERVAL_MS);
  loadConfig().catch((e) => show("config-result", e.message, false));
});
