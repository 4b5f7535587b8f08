// The page on `gmlm serve`: POST /v1/translate/stream, one table per line, one row per pass.
"use strict";

const $ = (id) => document.getElementById(id);
let models = {};          // objective -> {name, defaults}

function showError(msg) {
  const box = $("error");
  box.textContent = msg;
  box.hidden = !msg;
}

// A number where the field holds one, else the text as typed (the server names what is wrong with it).
function field(id) {
  const v = $(id).value.trim();
  if (v === "") return undefined;
  return /^-?\d+$/.test(v) ? parseInt(v, 10) : (isFinite(Number(v)) ? Number(v) : v);
}

function syncMode() {
  const mode = $("mode").value;
  const gmlm = mode === "gmlm";
  document.querySelectorAll(".gmlm").forEach((e) => { e.hidden = !gmlm; });
  document.querySelectorAll(".ar").forEach((e) => { e.hidden = mode !== "ar-beam"; });
  document.querySelectorAll(".threshold").forEach((e) => { e.hidden = !gmlm || $("remask").value !== "threshold"; });
}

async function loadModels() {
  try {
    const r = await fetch("/v1/models");
    const info = await r.json();
    const sel = $("mode");
    for (const m of info.models) {
      models[m.objective] = m;
      const opts = m.objective === "gmlm" ? [["gmlm", "GMLM refinement"]] : [["ar-greedy", "AR greedy"], ["ar-beam", "AR beam search"]];
      for (const [value, label] of opts) sel.add(new Option(label, value));
    }
    sel.value = info.default === "gmlm" ? "gmlm" : "ar-greedy";
    if (models.gmlm) {
      $("iterations").value = models.gmlm.defaults.iterations;
      $("length_beam").value = models.gmlm.defaults.length_beam;
    }
    $("served").textContent = "Serving " + info.models.map((m) => `${m.objective.toUpperCase()} ${m.name}`).join(" and ");
  } catch (e) {
    showError("could not read /v1/models: " + e);
  }
  syncMode();
}

function request(lines) {
  const mode = $("mode").value;
  const body = { text: lines, model: mode === "gmlm" ? "gmlm" : "ar" };
  if (mode === "gmlm") {
    for (const k of ["iterations", "length_beam"]) {
      const v = field(k);
      if (v !== undefined) body[k] = v;
    }
    body.remask = $("remask").value;
    if (body.remask === "threshold") body.threshold = field("threshold");
  } else {
    body.beam_size = mode === "ar-beam" ? field("beam_size") : 1;
  }
  return body;
}

function piece(p) { return p.replace(/▁/g, " "); }

function tokenSpan(text, conf, masked, changed) {
  const s = document.createElement("span");
  s.className = "tok" + (masked ? " masked" : "") + (changed ? " changed" : "");
  s.textContent = masked ? "▒" + text : text;
  if (conf !== undefined) {
    s.style.background = `hsl(${Math.round(120 * conf)}, 60%, 80%)`;
    s.title = `p = ${conf.toFixed(3)}` + (masked ? " (re-masked)" : "");
  }
  return s;
}

// One line's panel: the source, a table of passes (a column per candidate), the final text and its cost.
class Line {
  constructor(index, source, container, ar) {
    this.ar = ar;
    this.rows = 0;
    this.prev = [];
    this.best = 0;
    this.start = performance.now();
    this.el = document.createElement("div");
    this.el.className = "line";
    this.el.dataset.index = index;
    const h = document.createElement("h2");
    h.textContent = source;
    this.table = document.createElement("table");
    this.table.className = "passes";
    this.head = this.table.createTHead().insertRow();
    this.body = this.table.createTBody();
    this.final = document.createElement("div");
    this.final.className = "final";
    this.cost = document.createElement("div");
    this.cost.className = "cost";
    this.el.append(h, this.table, this.final, this.cost);
    container.append(this.el);
  }

  draft(d) {
    this.rows += 1;
    this.best = d.best;
    while (this.head.cells.length < d.candidates.length + 1) this.head.append(document.createElement("th"));
    d.candidates.forEach((c, k) => {
      this.head.cells[k + 1].textContent = this.ar ? `hypothesis ${k + 1}` : `length ${c.pieces.length}`;
    });
    const tr = this.body.insertRow();
    tr.className = "pass";
    const no = tr.insertCell();
    no.className = "pass-no";
    no.textContent = this.ar ? `step ${this.rows}` : `pass ${this.rows}`;
    d.candidates.forEach((c, k) => {
      const td = tr.insertCell();
      td.className = "cell";
      td.dataset.cand = k;
      if (this.ar || c.passes === this.rows) {   // it ran in this pass
        td.classList.add("ran");
        if (c.pruned) td.classList.add("pruned");
        const prev = this.ar ? null : this.prev[k];
        c.pieces.forEach((p, j) => {
          td.append(tokenSpan(piece(p), c.confidences[j], c.masked[j], prev != null && prev[j] !== p));
        });
        this.prev[k] = c.pieces;
      }
    });
    this.el.dataset.passes = this.rows;
  }

  result(r) {
    const cells = this.head.cells;
    if (cells.length > this.best + 1) cells[this.best + 1].classList.add("winner");
    for (const tr of this.body.rows)
      for (const td of tr.cells)
        if (td.dataset.cand == this.best && td.classList.contains("ran")) td.classList.add("win");
    this.final.textContent = r.text || "(nothing to translate)";
    const ms = performance.now() - this.start;
    const unit = this.ar ? "steps" : "passes";
    this.cost.textContent = `${r.iterations} ${unit} (winner) · ${this.rows} rows · score ${r.score.toFixed(3)} · ${ms.toFixed(0)} ms`;
    this.el.dataset.iterations = r.iterations;
    this.el.dataset.done = "1";
  }
}

function parseEvents(buffer, handle) {
  let at;
  while ((at = buffer.indexOf("\n\n")) >= 0) {
    const chunk = buffer.slice(0, at);
    buffer = buffer.slice(at + 2);
    let kind = "message", data = "";
    for (const l of chunk.split("\n")) {
      if (l.startsWith("event: ")) kind = l.slice(7);
      else if (l.startsWith("data: ")) data += l.slice(6);
    }
    handle(kind, data ? JSON.parse(data) : {});
  }
  return buffer;
}

async function translate() {
  const lines = $("text").value.split("\n").map((l) => l.trim()).filter((l) => l);
  showError("");
  if (!lines.length) { showError("Type a sentence first."); return; }
  const body = request(lines);
  const ar = body.model === "ar";
  const out = $("lines");
  out.replaceChildren();
  $("summary").textContent = "";
  $("go").disabled = true;
  document.body.dataset.state = "running";
  const t0 = performance.now();
  try {
    const resp = await fetch("/v1/translate/stream", {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
    });
    if (!resp.ok) {
      let msg = `HTTP ${resp.status}`;
      try { msg += ": " + (await resp.json()).error; } catch (e) { /* not JSON */ }
      showError(msg);
      return;
    }
    const panels = lines.map((l, i) => new Line(i, l, out, ar));
    const reader = resp.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "", rows = 0;
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer = parseEvents(buffer + decoder.decode(value, { stream: true }), (kind, d) => {
        if (kind === "draft") { panels[d.index].draft(d); rows += 1; }
        else if (kind === "result") panels[d.index].result(d);
        else if (kind === "error") showError(d.error);
        else if (kind === "done") {
          const ms = performance.now() - t0;
          $("summary").textContent = `${lines.length} line(s) in ${ms.toFixed(0)} ms, ${rows} ${ar ? "steps" : "passes"} shown`;
        }
      });
    }
  } catch (e) {
    showError("the request failed: " + e);
  } finally {
    $("go").disabled = false;
    document.body.dataset.state = "idle";
  }
}

$("go").addEventListener("click", translate);
$("text").addEventListener("keydown", (e) => {
  if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); translate(); }
});
$("mode").addEventListener("change", syncMode);
$("remask").addEventListener("change", syncMode);
loadModels();
