// The live dashboard: polls /api/run once a second and updates the page in
// place (open evidence stays open); countdowns and elapsed times tick in
// between. Text is always set with textContent; the only markup inserted is
// the server's escaped SVG chart.
"use strict";

const POLL_MS = 1000;
const stepItems = new Map();

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

// `2h30m`, `7m12s`, `45s`: at most two units, like the runbook language.
function dur(secs) {
  if (secs === null || secs === undefined) return "–";
  const sign = secs < 0 ? "-" : "";
  const abs = Math.abs(secs);
  // Under 10 s with its fraction, as the plan writes it (`3.2s`, `0.34s`).
  if (abs < 10 && abs % 1 !== 0) {
    const ms = Math.round(abs * 1000);
    return sign + (ms < 1000 ? Math.max(Math.ceil(ms / 10), 1) / 100 : Math.round(ms / 100) / 10) + "s";
  }
  let s = Math.trunc(abs);
  const parts = [[Math.floor(s / 86400), "d"], [Math.floor(s % 86400 / 3600), "h"], [Math.floor(s % 3600 / 60), "m"], [s % 60, "s"]];
  const first = parts.findIndex(p => p[0] > 0);
  if (first < 0) return "0s";
  return sign + parts.slice(first, first + 2).filter(p => p[0] > 0).map(p => p[0] + p[1]).join("");
}
function offset(secs) { return secs === 0 ? "T0" : secs > 0 ? "T+" + dur(secs) : "T-" + dur(-secs); }
function utc(iso) { return iso ? iso.replace("T", " ").replace(/\.\d+/, "").replace("Z", "") : "–"; }
function instant(i) { return i ? offset(i.offset_s) + " " + utc(i.utc) : "–"; }
// Sizes in IEC units, as every text format of the report writes them.
function size(n) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let v = n, u = 0;
  while (v >= 1024 && u < units.length - 1) { v /= 1024; u++; }
  return (u === 0 ? v : v.toFixed(1)) + " " + units[u];
}

// A progress figure with its unit once, as the terminal writes it:
// `24.0 MiB of 64.0 MiB (37%)`, `3.0 MiB of 12.0 MiB copied (25%)`,
// `40 of 100 rows copied (40%)`, `512 B of lag`. A unit counted in bytes
// ("bytes", "bytes copied", "bytes of lag") reads in IEC sizes.
function progressText(p) {
  const bytes = p.unit === "bytes" || p.unit.startsWith("bytes ");
  const amount = n => bytes ? size(n) : String(n);
  const rest = bytes ? p.unit.slice("bytes".length) : " " + p.unit;
  let text = amount(p.done);
  if (p.total) text += " of " + amount(p.total);
  text += rest;
  if (p.total) text += " (" + Math.floor(100 * p.done / p.total) + "%)";
  return text;
}

// Elapsed times and countdowns tick here between polls, on the server's
// clock (the offset of this device's clock from it is kept at each poll),
// and keep ticking while the server cannot be reached.
let clockOffsetMs = 0;
function serverNow() { return Date.now() + clockOffsetMs; }
function ticking(tag, cls, key, iso, label) {
  const e = el(tag, cls);
  e.dataset[key] = iso;
  if (label !== undefined) e.dataset.label = label;
  return e;
}
function tick() {
  const now = serverNow();
  for (const e of document.querySelectorAll("[data-since]")) {
    e.textContent = "running for " + dur((now - Date.parse(e.dataset.since)) / 1000) + " ";
  }
  for (const e of document.querySelectorAll("[data-until]")) {
    const left = Math.max(0, Math.ceil((Date.parse(e.dataset.until) - now) / 1000));
    e.textContent = "· " + (e.dataset.label ? e.dataset.label + ": " : "") + dur(left) + " left (until " + utc(e.dataset.until) + ") ";
  }
}

function evidenceNode(step) {
  const box = el("div", "evidence-list");
  if (step.evidence.length === 0) box.appendChild(el("p", "muted", "No evidence yet."));
  for (const e of step.evidence) {
    const obs = el("div", "observation");
    obs.appendChild(el("p", "", e.phase + ", attempt " + e.attempt + ", " + utc(e.at.utc) + " (" + offset(e.at.offset_s) + "): " + e.summary));
    if (e.data !== null) obs.appendChild(el("pre", "data", JSON.stringify(e.data, null, 2)));
    box.appendChild(obs);
  }
  return box;
}

function stepItem(step) {
  let item = stepItems.get(step.name);
  if (!item) {
    const li = el("li", "step");
    li.dataset.step = step.name;
    const details = el("details");
    const summary = el("summary");
    const parts = {
      name: el("span", "name", step.name),
      kind: el("span", "kind muted"),
      status: el("span", "status"),
      times: el("span", "times"),
      live: el("div", "live"),
    };
    summary.append(parts.name, parts.kind, parts.status, parts.times);
    details.append(summary, el("div", "definition muted"), el("div", "evidence-slot"));
    li.append(details, parts.live);
    item = { li, details, parts, evidenceKey: null };
    stepItems.set(step.name, item);
  }
  return item;
}

function updateStep(step, state) {
  const item = stepItem(step);
  const { li, parts } = item;
  li.dataset.status = step.status;
  parts.kind.textContent = step.kind;
  // A manual gate waiting for its confirmation says so, with its
  // instructions (as `cutover status` does), rather than "running · act".
  const waiting = step.waiting_for_confirmation;
  parts.status.textContent = waiting !== undefined && waiting !== null
    ? "waiting for confirmation: " + waiting
    : step.status + (step.phase && step.status === "running" ? " · " + step.phase : "");
  parts.status.dataset.status = step.status;
  let times = "planned " + instant(step.planned.start) + " · actual " + instant(step.actual.start);
  if (step.actual.duration_s !== null) times += " · took " + dur(step.actual.duration_s);
  if (step.attempts > 1) times += " · " + step.attempts + " attempts";
  parts.times.textContent = times;
  parts.live.replaceChildren();
  if (step.status === "running") {
    if (step.actual.start) parts.live.appendChild(ticking("span", "running-for", "since", step.actual.start.utc));
    const countdown = state.countdowns.find(c => c.step === step.name);
    if (countdown) parts.live.appendChild(ticking("span", "countdown", "until", countdown.until, countdown.label));
    if (step.progress) {
      const p = step.progress;
      parts.live.appendChild(el("div", "progress-figure", progressText(p)));
      if (p.total) { const bar = el("progress"); bar.max = p.total; bar.value = p.done; parts.live.appendChild(bar); }
    }
    if (step.last_message && step.last_message !== parts.status.textContent) parts.live.appendChild(el("div", "muted", step.last_message));
  }
  item.details.querySelector(".definition").textContent = step.definition;
  const key = step.evidence.length + ":" + step.status;
  if (item.evidenceKey !== key) {
    item.details.querySelector(".evidence-slot").replaceChildren(evidenceNode(step));
    item.evidenceKey = key;
  }
  return li;
}

function render(state) {
  const r = state.report;
  clockOffsetMs = Date.parse(state.now) - Date.now();
  document.getElementById("waiting").hidden = true;
  document.getElementById("run").hidden = false;
  document.getElementById("title").textContent = r.run.runbook + (r.run.title ? " — " + r.run.title : "");
  document.title = r.run.runbook + ": " + r.run.status + " · cutover";
  document.getElementById("outcome").textContent = r.run.outcome;
  document.getElementById("coordinator").textContent = state.coordinator ? "coordinator: " + state.coordinator : "no coordinator running";
  document.getElementById("times").textContent =
    "T0 " + utc(r.run.t0) + " UTC (" + r.run.t0_basis + ") · started " + utc(r.run.started_at) + " UTC · operator " + r.run.operator;
  const list = document.getElementById("steps");
  const items = r.steps.map(s => updateStep(s, state));
  items.forEach((li, i) => { if (list.children[i] !== li) list.insertBefore(li, list.children[i] || null); });
  while (list.children.length > items.length) list.lastChild.remove();
  tick();
  document.getElementById("gantt").innerHTML = state.gantt_svg;
  const crashes = r.sessions.length > 1 || r.sessions.some(s => s.end.startsWith("crashed"));
  document.getElementById("sessions-box").hidden = !crashes;
  const sessions = document.getElementById("sessions");
  sessions.replaceChildren(...r.sessions.map(s => {
    const li = el("li", s.end.startsWith("crashed") ? "crash" : "",
      "Session " + s.number + ": started " + utc(s.started_at.utc) + ", last record " + utc(s.last_record_at.utc) + " — " + s.end.replace(/_/g, " ") +
      (s.caught_mid_flight.length ? "; caught mid-flight: " + s.caught_mid_flight.map(c => c.step + (c.phase ? " (" + c.phase + ")" : "")).join(", ") : ""));
    return li;
  }));
  const table = document.getElementById("events");
  const head = el("tr");
  ["#", "Time (UTC)", "T", "Step", "Kind", "Message"].forEach(h => head.appendChild(el("th", "", h)));
  const rows = r.events.slice(-30).reverse().map(e => {
    const tr = el("tr");
    [String(e.id), utc(e.at.utc), offset(e.at.offset_s), e.step || "", e.kind, e.message].forEach(t => tr.appendChild(el("td", "", t)));
    return tr;
  });
  table.replaceChildren(head, ...rows);
}

function setLive(ok, text) {
  document.getElementById("live-dot").className = "live-dot" + (ok ? "" : " stale");
  document.getElementById("live-text").textContent = text;
}

async function poll() {
  try {
    const response = await fetch("/api/run", { cache: "no-store" });
    const body = await response.json();
    if (response.ok) {
      render(body);
      setLive(true, "live · updated " + utc(body.now) + " UTC");
    } else {
      const waiting = document.getElementById("waiting");
      waiting.hidden = false;
      waiting.textContent = body.waiting || "waiting for the run";
      setLive(false, "waiting");
    }
  } catch (err) {
    setLive(false, "cannot reach cutover serve (" + err + ")");
  }
  setTimeout(poll, POLL_MS);
}

poll();
setInterval(tick, 250);
