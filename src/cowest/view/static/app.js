// cowest view: one page over the resources of cowest.view.data. Each resource is a script, data/<name>.js, that
// calls cowestData(name, value): it loads from the local server and from a static export opened from disk alike.
"use strict";

const cache = {}, waiting = {};
window.cowestData = (name, value) => { cache[name] = value; (waiting[name] || []).forEach(f => f(value)); delete waiting[name]; };

function load(name) {
  if (name in cache) return Promise.resolve(cache[name]);
  return new Promise((resolve) => {
    const first = !(name in waiting);
    (waiting[name] = waiting[name] || []).push(resolve);
    if (!first) return;
    const s = document.createElement("script");
    s.src = `data/${name}.js`;
    s.onerror = () => window.cowestData(name, { error: `could not load ${name} (is the server still running?)` });
    document.head.appendChild(s);
  });
}

const $ = (sel) => document.querySelector(sel);
function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v; else if (k.startsWith("on")) e.addEventListener(k.slice(2), v); else e.setAttribute(k, v);
  }
  for (const k of kids.flat()) if (k !== null && k !== undefined) e.append(k instanceof Node ? k : String(k));
  return e;
}
const fmt = (x, d = 3) => (x === null || x === undefined || Number.isNaN(x)) ? "–" : Number(x).toFixed(d);
const signed = (x) => (x >= 0 ? "+" : "") + fmt(x);
const ci = (v) => `${fmt(v[0])} [${fmt(v[1])}, ${fmt(v[2])}]`;
function table(head, rows, attrs) {
  return el("table", attrs || {}, el("thead", {}, el("tr", {}, head.map(h => el("th", {}, h)))),
    el("tbody", {}, rows.map(r => r instanceof Node ? r : el("tr", {}, r.map(c => c instanceof Node ? c : el("td", {}, c))))));
}
function fail(where, value) {
  if (value && value.error) { where.replaceChildren(el("div", { class: "error" }, value.error)); return true; }
  return false;
}
const outcomeSpan = (o) => el("span", { class: `o o-${o}`, title: { R: "right", W: "wrong", U: "unreadable", "-": "not evaluated", "?": "no per-sample score" }[o] || o }, o);

let META = null;
const state = { tab: "run", run: 0, filters: {}, search: "", shown: [], sel: -1, sysA: 0, sysB: 1 };

// ---- tabs and links ----------------------------------------------------------------------------------------
function showTab(tab) {
  state.tab = tab;
  document.querySelectorAll(".tab").forEach(s => s.classList.toggle("active", s.id === tab));
  document.querySelectorAll("#tabs button").forEach(b => b.classList.toggle("active", b.dataset.tab === tab));
  ({ run: renderRun, questions: renderQuestions, feedback: renderFeedback, alignment: renderAlignment, compare: renderCompare })[tab]();
}
function readHash() {
  const h = new URLSearchParams(location.hash.slice(1));
  return { tab: h.get("tab"), run: h.get("run"), q: h.get("q") };
}
function setHash(params) { history.replaceState(null, "", "#" + new URLSearchParams(params).toString()); }

// ---- the run -----------------------------------------------------------------------------------------------
function renderRun() {
  const root = $("#run");
  root.replaceChildren(...META.runs.map(runSection));
}
function runSection(r) {
  const out = [el("h2", {}, `Run ${r.i}: ${r.name}`), el("div", { class: "hint" }, r.path)];
  for (const w of r.warnings || []) out.push(el("div", { class: "warn" }, "Warning: " + w));
  if (!r.systems) out.push(el("p", {}, "No metrics.json yet (evaluation not run)."));
  else {
    out.push(el("h3", {}, `Results: ${r.task}, ${r.n} questions (headline ${r.headline})`));
    out.push(table(["system", ...r.metrics, "extraction failures"], Object.entries(r.systems).map(([name, s]) =>
      el("tr", { "data-system": name }, el("td", {}, name), ...r.metrics.map(m => el("td", { class: "num", "data-metric": m }, s.values[m] ? ci(s.values[m]) : "–")),
        el("td", { class: "num" }, s.extraction_failures))), { class: "results" }));
    const paired = (r.paired || []).filter(p => p.metric === r.headline);
    if (paired.length) out.push(el("h3", {}, "Paired differences (a − b, 95% bootstrap CI)"),
      table(["a", "b", "metric", "a − b"], paired.map(p => [p.a, p.b, p.metric, `${signed(p.diff)} [${signed(p.ci[0])}, ${signed(p.ci[1])}]`])));
  }
  if (r.selection && r.selection.length) out.push(el("h3", {}, "Alignment check"), el("ul", {}, r.selection.map(s => el("li", {}, s.why))));
  if (r.feedback && r.feedback.length) out.push(el("h3", {}, "Feedback"), table(["round", "questions", "pairs", "positive share", "no pair", "why not"],
    r.feedback.map(f => [f.round, f.questions, f.pairs, fmt(f.positive_share, 2), f.questions_without_pair, Object.entries(f.no_pair_reasons || {}).map(([k, v]) => `${k} ${v}`).join(", ")])));
  if (r.stages && r.stages.length) out.push(el("h3", {}, "Stages"), table(["stage", "wall s", "finished", "attempts", "engines"],
    r.stages.map(s => [s.stage, fmt(s.wall_s, 1), s.finished || "", s.attempts ?? "", Object.entries(s.engines || {}).map(([role, c]) => c.engine ? `${role}: ${c.engine} ${c.dtype || ""}` : `${role}: as configured`).join("; ")])));
  if (r.plots && r.plots.length) out.push(el("h3", {}, "Plots"), el("div", {}, r.plots.map(p => el("img", { class: "plot", src: `plots/r${r.i}/${p}`, alt: p }))));
  out.push(el("details", {}, el("summary", {}, "config.yaml"), el("pre", {}, r.config || "(none)")));
  out.push(el("details", {}, el("summary", {}, "versions"), el("pre", {}, JSON.stringify(r.versions, null, 1))));
  return el("div", { class: "runsec" }, out);
}

// ---- the questions -----------------------------------------------------------------------------------------
const ROW = 28;
function runSelect(sel, onchange) {
  sel.replaceChildren(...META.runs.map(r => el("option", { value: r.i }, `${r.i}: ${r.name}`)));
  sel.value = state.run;
  sel.onchange = () => { state.run = Number(sel.value); onchange(); };
}
async function renderQuestions() {
  runSelect($("#q-run"), () => { state.filters = {}; state.sel = -1; renderQuestions(); });
  const idx = await load(`r${state.run}-index`);
  if (fail($("#q-detail"), idx)) { $("#q-list").querySelector(".vspace").replaceChildren(); return; }
  const filters = $("#q-filters");
  filters.replaceChildren(...idx.systems.map((s, k) => {
    const sel = el("select", { "data-system": s }, ["any", "R", "W", "U"].map(v => el("option", { value: v }, v === "any" ? "any" : { R: "right", W: "wrong", U: "unreadable" }[v])));
    sel.value = state.filters[s] || "any";
    sel.onchange = () => { state.filters[s] = sel.value; applyFilter(idx); };
    return el("label", {}, s + " ", sel);
  }));
  for (const [id, key] of [["#q-sys-a", "sysA"], ["#q-sys-b", "sysB"]]) {
    const sel = $(id);
    sel.replaceChildren(...idx.systems.map((s, k) => el("option", { value: k }, s)));
    if (state[key] >= idx.systems.length) state[key] = 0;
    sel.value = state[key];
    sel.onchange = () => { state[key] = Number(sel.value); };
  }
  $("#q-search").value = state.search;
  $("#q-search").oninput = (e) => { state.search = e.target.value; applyFilter(idx); };
  $("#q-list").onscroll = () => drawRows(idx);
  applyFilter(idx);
}
function applyFilter(idx) {
  const want = idx.systems.map(s => state.filters[s] || "any"), text = state.search.toLowerCase();
  state.shown = [];
  idx.rows.forEach((r, pos) => {
    if (want.every((w, k) => w === "any" || r[2][k] === w) && (!text || r[1].toLowerCase().includes(text) || r[0].toLowerCase().includes(text))) state.shown.push(pos);
  });
  $("#q-count").textContent = `${state.shown.length} of ${idx.rows.length} questions`;
  $("#q-list").querySelector(".vspace").style.height = `${state.shown.length * ROW}px`;
  drawRows(idx);
}
function drawRows(idx) {
  const list = $("#q-list"), space = list.querySelector(".vspace");
  const first = Math.max(0, Math.floor(list.scrollTop / ROW) - 5), last = Math.min(state.shown.length, first + Math.ceil(list.clientHeight / ROW) + 10);
  const rows = [];
  for (let k = first; k < last; k++) {
    const pos = state.shown[k], r = idx.rows[pos];
    rows.push(el("div", { class: "row" + (pos === state.sel ? " sel" : ""), style: `top:${k * ROW}px`, "data-id": r[0], onclick: () => openQuestion(pos) },
      ...[...r[2]].map(outcomeSpan), " ", el("b", {}, r[0]), " ", r[1]));
  }
  space.replaceChildren(...rows);
}
async function openQuestion(pos, scroll) {
  const idx = await load(`r${state.run}-index`);
  if (pos < 0 || pos >= idx.rows.length) return;
  state.sel = pos;
  const id = idx.rows[pos][0];
  setHash({ tab: "questions", run: state.run, q: id });
  const k = state.shown.indexOf(pos), list = $("#q-list");
  if (scroll && k >= 0 && (k * ROW < list.scrollTop || (k + 1) * ROW > list.scrollTop + list.clientHeight)) list.scrollTop = k * ROW - list.clientHeight / 2;
  drawRows(idx);
  const page = await load(`r${state.run}-q${Math.floor(pos / idx.page)}`);
  const box = $("#q-detail");
  if (fail(box, page)) return;
  const q = page.questions.find(x => x.id === id);
  box.replaceChildren(...questionChain(q, idx).filter(x => x));
}
function questionChain(q, idx) {
  const out = [el("h3", { id: "q-title" }, q.id), el("pre", { class: "question" }, q.question || "(question text not available: the task's data could not be read; the prompts below hold it)")];
  if (q.gold) out.push(el("p", {}, el("b", {}, "gold: "), el("span", { class: "gold" }, q.gold.join(" | "))));
  for (const s of idx.systems) {
    const c = q.systems[s];
    if (!c) { out.push(el("h4", {}, s), el("p", {}, "not evaluated")); continue; }
    const o = idx.rows.find(r => r[0] === q.id)[2][idx.systems.indexOf(s)];
    const head = el("h4", { "data-system": s }, outcomeSpan(o), ` ${s}: answer `, el("code", { class: "prediction" }, c.prediction ?? "(none extracted)"), ` · ${Object.entries(c.scores).map(([k, v]) => `${k} ${fmt(v, 2)}`).join(", ")}`);
    const steps = c.steps.map(st => el("div", { class: `step ${st.role}`, "data-step": st.name },
      el("div", {}, el("b", {}, `${st.role} · ${st.name}`), st.cached ? " (cached)" : "", st.finish === "length" ? " (cut at the token limit)" : "", st.error ? ` error: ${st.error}` : ""),
      el("details", {}, el("summary", {}, "prompt"), el("pre", {}, st.prompt)), el("pre", { class: "output" }, st.text)));
    const route = Object.keys(c.route || {}).length ? el("p", {}, `router: ${Object.entries(c.route).map(([k, v]) => `${k} ${typeof v === "number" ? fmt(v) : v}`).join(", ")}`) : null;
    out.push(head, route, ...steps);
  }
  return out;
}
function step(dir) {
  const k = state.shown.indexOf(state.sel);
  const next = k < 0 ? 0 : k + dir;
  if (next >= 0 && next < state.shown.length) openQuestion(state.shown[next], true);
}
async function nextChanged() {
  const idx = await load(`r${state.run}-index`);
  const k0 = state.shown.indexOf(state.sel);
  for (let k = k0 + 1; k < state.shown.length; k++) {
    const o = idx.rows[state.shown[k]][2];
    if (o[state.sysA] !== o[state.sysB]) return openQuestion(state.shown[k], true);
  }
  $("#status").textContent = "no further question changed";
}

// ---- the feedback ------------------------------------------------------------------------------------------
const fstate = { sort: null, search: "", sel: null };
async function renderFeedback() {
  runSelect($("#f-run"), renderFeedback);
  const fb = await load(`r${state.run}-fb`), box = $("#f-table");
  if (fail(box, fb)) return;
  if (!fb.rows.length) { box.replaceChildren(el("p", {}, "No feedback in this run.")); return; }
  $("#f-search").value = fstate.search;
  $("#f-search").oninput = (e) => { fstate.search = e.target.value; renderFeedback(); };
  let rows = fb.rows.map((r, pos) => ({ r, pos })).filter(x => !fstate.search || x.r[1].includes(fstate.search));
  const best = (x) => Math.max(...x.r[3].map(d => d ?? -Infinity));
  if (fstate.sort) rows.sort((a, b) => fstate.sort * (best(a) - best(b)));
  $("#f-count").textContent = `${rows.length} feedback questions`;
  const th = el("th", { class: "sort", onclick: () => { fstate.sort = fstate.sort === -1 ? 1 : -1; renderFeedback(); } }, "Δ per draft " + (fstate.sort === -1 ? "▼" : fstate.sort === 1 ? "▲" : ""));
  box.replaceChildren(el("table", { class: "feedback" }, el("thead", {}, el("tr", {}, el("th", {}, "round"), el("th", {}, "question"), el("th", {}, "E(z)"), th, el("th", {}, "pair status"), el("th", {}, "why no pair"))),
    el("tbody", {}, rows.slice(0, 2000).map(({ r, pos }) => el("tr", { class: "click" + (fstate.sel === pos ? " sel" : ""), "data-id": r[1], onclick: () => openFeedback(pos) },
      el("td", {}, r[0]), el("td", {}, r[1]), el("td", { class: "num" }, fmt(r[2], 2)), el("td", { class: "num delta" }, r[3].map(d => d === null ? "–" : signed(d)).join(" ")),
      el("td", { class: "status" }, r[4].map(s => el("span", { class: s }, s + " "))), el("td", { class: "why" }, r[5]))))),
    rows.length > 2000 ? el("p", {}, `first 2000 of ${rows.length}: search by id to find the others`) : "");
}
async function openFeedback(pos) {
  fstate.sel = pos;
  const fb = await load(`r${state.run}-fb`);
  const page = await load(`r${state.run}-fbq${Math.floor(pos / fb.page)}`), box = $("#f-detail");
  if (fail(box, page)) return;
  const r = fb.rows[pos], rec = page.records.find(x => x.question_id === r[1] && x.round === r[0]);
  box.replaceChildren(el("h3", {}, `${rec.question_id} (round ${rec.round})`), el("pre", {}, rec.prompt.map(m => m.content).join("\n")),
    el("h4", {}, `strong model alone (z): answer ${rec.solo_prediction ?? "(none)"}, E(z) = ${fmt(rec.solo_score, 2)}`), el("pre", {}, rec.solo),
    ...rec.drafts.map((d, k) => el("div", { class: "step", "data-draft": k },
      el("div", {}, el("b", {}, `draft ${k + 1}`), ` · Δ = ${d.delta === null ? "–" : signed(d.delta)} · E(y*) = ${fmt(d.score, 2)} · `, el("span", { class: r[4][k] }, r[4][k] === "-" ? "in no pair" : r[4][k])),
      el("pre", { class: "draft" }, d.text), el("div", {}, `refinement (answer ${d.prediction ?? "none"}):`), el("pre", {}, d.refinement))),
    r[5] ? el("p", {}, `No pair: ${r[5].replaceAll("_", " ")}`) : "");
}

// ---- alignment ---------------------------------------------------------------------------------------------
function chart(steps, keys) {
  const W = 520, H = 180, P = 30, xs = steps.map(s => s.step), colors = ["#15803d", "#b91c1c", "#1d4ed8", "#a16207"];
  const vals = steps.flatMap(s => keys.map(k => s[k])), lo = Math.min(...vals), hi = Math.max(...vals), x0 = Math.min(...xs), x1 = Math.max(...xs);
  const X = (x) => P + (W - 2 * P) * (x1 === x0 ? 0.5 : (x - x0) / (x1 - x0)), Y = (y) => H - P - (H - 2 * P) * (hi === lo ? 0.5 : (y - lo) / (hi - lo));
  const ns = "http://www.w3.org/2000/svg", svg = document.createElementNS(ns, "svg");
  svg.setAttribute("width", W); svg.setAttribute("height", H);
  const add = (tag, attrs, text) => { const e = document.createElementNS(ns, tag); for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v); if (text) e.textContent = text; svg.appendChild(e); };
  keys.forEach((k, j) => {
    add("polyline", { fill: "none", stroke: colors[j], "stroke-width": 2, points: steps.map(s => `${X(s.step)},${Y(s[k])}`).join(" ") });
    add("text", { x: P + 120 * j, y: 12, fill: colors[j] }, k);
  });
  add("text", { x: 2, y: Y(hi) + 4 }, fmt(hi, 1)); add("text", { x: 2, y: Y(lo) + 4 }, fmt(lo, 1));
  add("text", { x: X(x0), y: H - 8 }, `step ${x0}`); add("text", { x: X(x1) - 40, y: H - 8 }, `step ${x1}`);
  return svg;
}
async function renderAlignment() {
  const root = $("#alignment"), out = [];
  for (const r of META.runs) {
    out.push(el("h2", {}, `Run ${r.i}: ${r.name}`));
    if (!r.dpo.length) out.push(el("p", {}, "No DPO training log in this run."));
    for (const a of r.dpo) {
      out.push(el("h3", {}, `${a.adapter}: ${a.steps.length} logged steps`), chart(a.steps, ["logps/chosen", "logps/rejected"]), chart(a.steps, ["rewards/margins"]),
        el("details", {}, el("summary", {}, "every step"), table(["step", "logps/chosen", "logps/rejected", "rewards/chosen", "rewards/margins"],
          a.steps.map(s => [s.step, fmt(s["logps/chosen"]), fmt(s["logps/rejected"]), fmt(s["rewards/chosen"]), fmt(s["rewards/margins"])]), { class: "dpo" })));
    }
    if (!r.systems) continue;
    const ch = await load(`r${r.i}-aligned`);
    if (ch.error) { out.push(el("div", { class: "error" }, ch.error)); continue; }
    for (const [system, rows] of Object.entries(ch.changes)) {
      out.push(el("h3", {}, `Dev drafts ${system} changed against collab_sft: ${rows.length}`),
        table(["question", "draft before (SFT)", "draft after (aligned)", "outcome before → after"], rows.map(x => el("tr", { "data-id": x[0] },
          el("td", {}, el("a", { href: `#tab=questions&run=${r.i}&q=${encodeURIComponent(x[0])}` }, x[0])), el("td", {}, el("pre", {}, x[1])), el("td", {}, el("pre", {}, x[2])),
          el("td", {}, outcomeSpan(x[3]), " → ", outcomeSpan(x[4])))), { class: "changed" }));
    }
  }
  root.replaceChildren(...out);
}

// ---- compare -----------------------------------------------------------------------------------------------
function renderCompare() {
  const root = $("#compare");
  if (META.runs.length < 2) { root.replaceChildren(el("p", {}, "Give two or more run directories to compare them: cowest view RUN_A RUN_B")); return; }
  const out = [];
  for (const c of META.compare) {
    const a = META.runs[c.a], b = META.runs[c.b];
    if (c.note) { out.push(el("div", { class: "warn" }, `run ${c.b} against run ${c.a}: ${c.note}`)); continue; }
    out.push(el("h3", { "data-system": c.system }, `${c.system}: run ${c.b} (${b.name}) − run ${c.a} (${a.name}) = `, el("span", { class: "diff" }, `${signed(c.diff)} [${signed(c.ci[0])}, ${signed(c.ci[1])}]`), ` ${c.metric}, ${c.n} questions matched by id`),
      el("p", {}, `${c.changed.length} questions changed outcome:`),
      table(["question", `run ${c.a}`, `run ${c.b}`], c.changed.map(x => el("tr", { "data-id": x[0] },
        el("td", {}, el("a", { href: `#tab=questions&run=${c.b}&q=${encodeURIComponent(x[0])}` }, x[0])), el("td", {}, outcomeSpan(x[1])), el("td", {}, outcomeSpan(x[2])))), { class: "changed" }));
  }
  root.replaceChildren(...out);
}

// ---- start -------------------------------------------------------------------------------------------------
async function route() {
  const h = readHash();
  if (h.run !== null && META.runs[Number(h.run)]) state.run = Number(h.run);
  showTab(h.tab && document.getElementById(h.tab) ? h.tab : state.tab);
  if (h.tab === "questions" && h.q !== null) {
    const idx = await load(`r${state.run}-index`);
    if (idx.error) return;
    const pos = idx.rows.findIndex(r => r[0] === h.q);
    if (pos < 0) { $("#q-detail").replaceChildren(el("div", { class: "error" }, `no question '${h.q}' in run ${state.run}`)); return; }
    if (!state.shown.includes(pos)) { state.filters = {}; state.search = ""; applyFilter(idx); }
    openQuestion(pos, true);
  }
}
document.addEventListener("keydown", (e) => {
  if (e.target.tagName === "INPUT" || e.target.tagName === "SELECT") { if (e.key === "Escape") e.target.blur(); return; }
  if (state.tab !== "questions") return;
  if (e.key === "j" || e.key === "ArrowDown") { e.preventDefault(); step(1); }
  else if (e.key === "k" || e.key === "ArrowUp") { e.preventDefault(); step(-1); }
  else if (e.key === "n") nextChanged();
  else if (e.key === "/") { e.preventDefault(); $("#q-search").focus(); }
});
document.querySelectorAll("#tabs button").forEach(b => b.addEventListener("click", () => { setHash({ tab: b.dataset.tab, run: state.run }); showTab(b.dataset.tab); }));
window.addEventListener("hashchange", route);
{ // the first page's questions load beside the summary, not after it
  const h = readHash();
  if (h.tab === "questions") load(`r${Number(h.run) || 0}-index`);
}
load("meta").then((meta) => {
  if (meta.error) { document.querySelector("main").replaceChildren(el("div", { class: "error" }, meta.error)); return; }
  META = meta;
  document.body.dataset.ready = "1";
  route();
});
