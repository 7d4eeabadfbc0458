// The Forgetting tab. First screen: every class a row, every run a line in it, on each
// run's own epochs (runs of any length line up), each class's own blocks shaded. Below,
// each run in detail: per-class probe accuracy with the phases shaded, the accuracy
// matrix, average forgetting and BWT; then the final per-class test table. It polls its
// routes while runs train. Plain ES module and SVG: nothing is fetched but this plugin's
// own routes.

const SVG = "http://www.w3.org/2000/svg";
// Ten clearly distinct colours (d3's category10); more classes get evenly spaced hues.
const PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b",
                 "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];
const HEIGHT = 310, M = {left: 48, right: 16, top: 34, bottom: 30};
const POLL_MS = 10000;  // how often the tab asks for new points and new runs
let WIDTH = 1100;  // the charts' width: the page's, set at every draw

function colour(i, n) {
  return n <= PALETTE.length ? PALETTE[i] : `hsl(${(i * 360) / n}, 70%, 45%)`;
}

// Viridis, sampled: 0 (dark purple) .. 1 (yellow).
const VIRIDIS = [[68, 1, 84], [72, 40, 120], [62, 74, 137], [49, 104, 142], [38, 130, 142],
                 [31, 158, 137], [53, 183, 121], [109, 205, 89], [180, 222, 44], [253, 231, 37]];
function heat(v) {
  if (v === null || v === undefined) return "#eee";
  const x = Math.max(0, Math.min(1, v)) * (VIRIDIS.length - 1), i = Math.min(Math.floor(x), VIRIDIS.length - 2);
  const t = x - i, a = VIRIDIS[i], b = VIRIDIS[i + 1];
  return `rgb(${a.map((c, k) => Math.round(c + t * (b[k] - c))).join(",")})`;
}

function el(name, attrs = {}, parent = null, text = null) {
  const node = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== null) node.textContent = text;
  if (parent) parent.appendChild(node);
  return node;
}

function html(name, attrs = {}, parent = null, text = null) {
  const node = document.createElement(name);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== null) node.textContent = text;
  if (parent) parent.appendChild(node);
  return node;
}

const fmt = (v, signed = false) => v === null || v === undefined ? "-" :
  (signed && v >= 0 ? "+" : "") + v.toFixed(4);

// `axis`: "epoch", "phase" or "step"; `range`: the zoom, in the axis's units, shared by
// every chart; `hidden`: per run, the classes it does not draw.
const state = {runs: [], views: {}, axis: null, range: null, hidden: new Map(), unfolded: new Set()};
// The runs drawn: those whose name matches the run filter (a regular expression, as in
// TensorBoard's own run filter); every run when it is empty, invalid or matches none.
function visibleRuns() {
  let pattern = null;
  try { pattern = state.filter ? new RegExp(state.filter, "i") : null; } catch (e) { /* invalid: all */ }
  const runs = pattern ? state.runs.filter((r) => pattern.test(r.run)) : state.runs;
  return runs.length ? runs : state.runs;
}
const hiddenIn = (run) => state.hidden.get(run) || state.hidden.set(run, new Set()).get(run);
const AXES = {epoch: "epoch", phase: "phase", step: "step"};

// TensorBoard's dark theme: it marks its own page's body "dark-mode"; the tab (in an
// iframe of the same origin) follows it, and follows it when it changes.
function followTheme() {
  const apply = () => {
    let dark = false;
    try { dark = window.parent.document.body.classList.contains("dark-mode"); } catch (e) { /* not framed */ }
    document.body.classList.toggle("dark", dark);
  };
  apply();
  try {
    new MutationObserver(apply).observe(window.parent.document.body, {attributes: true, attributeFilter: ["class"]});
  } catch (e) { /* not framed by TensorBoard */ }
}

// Round tick values (1, 2 or 5 times a power of ten) covering [a, b], about n of them.
function niceTicks(a, b, n = 8) {
  if (!(b > a)) return [a];
  const raw = (b - a) / n, mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((k) => k * mag).find((k) => k >= raw);
  const ticks = [];
  for (let t = Math.ceil(a / step) * step; t <= b + step * 1e-9; t += step) {
    ticks.push(Number(t.toPrecision(12)));
  }
  return ticks;
}

// Blocks on a chart, [[first, end]] on the axis, as rects in pixels ([[left, width, share]]):
// a block POOL_PX wide or more is drawn as itself (share 1); narrower ones are pooled into
// POOL_PX-wide columns, each shaded by the share of it they cover (in eighths), and equal
// neighbouring columns merge, so any number of phases draws as at most a rect per column.
// `px`: axis to pixels; [lo, hi]: the part of the axis drawn.
const POOL_PX = 2;
function pooled(blocks, px, lo, hi) {
  const rects = [], cover = new Map();
  for (const [first, end] of blocks) {
    if (end < lo || first > hi) continue;
    const a = px(Math.max(first, lo)), b = px(Math.min(end, hi));
    if (b - a >= POOL_PX) { rects.push([a, b - a, 1, false]); continue; }
    const col = Math.floor(a / POOL_PX), split = Math.min(b, (col + 1) * POOL_PX);
    cover.set(col, (cover.get(col) || 0) + (split - a));
    if (b > split) cover.set(col + 1, (cover.get(col + 1) || 0) + (b - split));
  }
  let last = null;
  for (const col of [...cover.keys()].sort((x, y) => x - y)) {
    const share = Math.max(1, Math.round(Math.min(1, cover.get(col) / POOL_PX) * 8)) / 8;
    if (last && last.col === col - 1 && last.share === share) { last.rect[1] += POOL_PX; last.col = col; continue; }
    last = {col, share, rect: [col * POOL_PX, POOL_PX, share, true]};
    rects.push(last.rect);
  }
  return rects;  // [left, width, share, pooled]
}

export async function render() {
  document.body.style.fontFamily = "Roboto, Arial, sans-serif";
  document.body.style.margin = "16px";
  const style = html("style", {}, document.head);
  style.textContent = `
    .card {border: 1px solid #ddd; border-radius: 4px; padding: 8px 12px; margin: 0 0 16px;}
    .card h3 {margin: 4px 0; font-size: 15px;} .summary {color: #444; font-size: 13px;}
    .legend span {display: inline-block; margin-right: 12px; cursor: pointer; font-size: 13px;}
    .legend span.off {opacity: 0.3;} .legend a.only {font-size: 11px; color: #888; margin: 0 12px 0 -8px;
      cursor: pointer; text-decoration: underline dotted;} .swatch {display: inline-block; width: 14px; height: 4px;
      margin-right: 4px; vertical-align: middle;}
    #tooltip {position: fixed; pointer-events: none; background: rgba(255,255,255,0.96);
      border: 1px solid #999; padding: 4px 8px; font-size: 12px; display: none; z-index: 9;}
    table.final {border-collapse: collapse; font-size: 13px;}
    table.final td, table.final th {border: 1px solid #ddd; padding: 2px 8px; text-align: right;}
    .controls {margin: 8px 0 16px; font-size: 13px;} .note {color: #a00; font-size: 13px;}
    .definition {color: #555; font-size: 12px; margin: 2px 0 4px;}
    .export {font-size: 12px; color: #777; margin: 6px 0 0;} .export a {margin-right: 10px; color: #1a73e8;}
    .row {display: flex; gap: 16px; flex-wrap: wrap;} #compare svg {display: block;}
    body.dark {background: #202124; color: #e8eaed;} body.dark .card {border-color: #4a4d51;}
    body.dark .summary, body.dark .definition {color: #bdc1c6;} body.dark .note {color: #f28b82;}
    body.dark svg text:not([fill]) {fill: #e8eaed;}
    body.dark line[stroke="#333"] {stroke: #9aa0a6;} body.dark line[stroke="#eee"] {stroke: #3c4043;}
    body.dark rect[fill="#fafafa"], body.dark rect[fill="var(--plot, #fafafa)"] {fill: #2b2c2f;}
    body.dark rect[fill="#f0f0f0"] {fill: #35373b;} body.dark rect[fill="#eee"] {fill: #3c4043;}
    body.dark #tooltip {background: rgba(48,49,52,0.96); color: #e8eaed; border-color: #5f6368;}
    body.dark table.final td, body.dark table.final th {border-color: #4a4d51;}
    body.dark input, body.dark select, body.dark button {background: #303134; color: #e8eaed;
      border: 1px solid #5f6368;}`;
  followTheme();
  const tooltip = html("div", {id: "tooltip"}, document.body);
  state.tooltip = tooltip;
  html("h2", {style: "margin: 0 0 4px; font-size: 18px"}, document.body,
       "Forgetting: per-class probe accuracy, phase by phase");
  const controls = html("div", {class: "controls", id: "controls"}, document.body);
  html("div", {id: "runs"}, document.body);
  const saved = urlState();
  if (AXES[saved["p.forgetting.axis"]]) state.axis = saved["p.forgetting.axis"];
  state.filter = saved["p.forgetting.runs"] || "";
  const zoom = (saved["p.forgetting.zoom"] || "").split(",").map(Number);
  if (zoom.length === 2 && zoom[1] > zoom[0]) state.range = zoom;
  await refresh(controls);
  setInterval(() => refresh(controls).catch(() => {}), POLL_MS);
  listenToTensorBoard(() => refresh(controls).catch(() => {}));
  window.addEventListener("resize", () => { if (state.runs.length) draw(); });
}

// TensorBoard's plugin messages (its experimental plugin API: a MessageChannel opened by
// "experimental.bootstrap"): `onReload` runs when TensorBoard reloads its data (its reload
// button, its auto-reload) and when its run list changes; each message is answered.
function listenToTensorBoard(onReload) {
  if (window.parent === window) return;
  const channel = new MessageChannel();
  channel.port1.onmessage = (ev) => {
    let message;
    try { message = JSON.parse(ev.data); } catch (e) { return; }
    if (message.isReply) return;
    if (message.type === "experimental.DataReloaded" || message.type === "experimental.RunsChanged") {
      document.body.dataset.reloads = Number(document.body.dataset.reloads || 0) + 1;
      onReload();
    }
    channel.port1.postMessage(JSON.stringify({type: message.type, id: message.id, payload: null,
                                              error: null, isReply: true}));
  };
  window.parent.postMessage("experimental.bootstrap", "*", [channel.port2]);
}

// Reads the runs and, when a run is new or has new points, its view; then redraws,
// keeping the zoom (live while runs train). Each run draws as soon as its view arrives.
async function refresh(controls) {
  const runs = await (await fetch("./runs")).json();
  const main = document.getElementById("runs");
  if (!runs.length) {
    if (!document.getElementById("empty")) {
      html("p", {id: "empty"}, main, "No run with a probe (probe/accuracy/class_C scalars) yet.");
    }
    return;
  }
  const known = Object.fromEntries(state.runs.map((r) => [r.run, r.last_step]));
  const stale = runs.filter((r) => known[r.run] !== r.last_step);
  const order = runs.map((r) => r.run);
  if (!stale.length && state.runs.every((r) => order.includes(r.run))) return;
  let queued = false;
  // `data-loading` on the body: views asked for and not yet drawn (0: every run drawn).
  state.pending = (state.pending || 0) + stale.length;
  document.body.dataset.loading = state.pending;
  const show = (arrived) => {
    state.runs = [...state.runs.filter((r) => r.run !== arrived?.run && order.includes(r.run)),
                  ...(arrived ? [arrived] : [])].sort((a, b) => order.indexOf(a.run) - order.indexOf(b.run));
    if (!state.axis) state.axis = Object.values(state.views).some((v) => v.unit === "task") ? "phase" : "epoch";
    if (queued) return;
    queued = true;
    setTimeout(() => { queued = false; buildControls(controls); draw(); document.body.dataset.loading = state.pending; }, 0);
  };
  if (!stale.length) show(null);  // a run went away
  await Promise.all(stale.map(async (r) => {
    try {
      state.views[r.run] = await (await fetch(`./data?run=${encodeURIComponent(r.run)}`)).json();
    } catch (e) {
      state.pending -= 1;
      document.body.dataset.loading = state.pending;
      throw e;
    }
    state.pending -= 1;
    show(r);  // each run draws as soon as its view arrives
  }));
}

function buildControls(controls) {
  controls.innerHTML = "";
  html("span", {}, controls, "runs ");
  const filter = html("input", {id: "run-filter", type: "search", placeholder: "filter (regex)",
                                 style: "width: 120px; margin-right: 12px", value: state.filter || ""}, controls);
  filter.value = state.filter || "";
  filter.onchange = () => { state.filter = filter.value; state.range = null; saveUrlState(); buildControls(controls); setRange(null); };
  html("span", {}, controls, "x-axis ");
  const axis = html("select", {id: "axis", title: "epochs and phases are each run's own: runs of " +
                               "different lengths line up"}, controls);
  for (const [value, label] of [["epoch", "epochs (each run's own)"], ["phase", "phases / tasks (each run's own)"],
                                ["step", "steps"]]) {
    html("option", {value}, axis, label).selected = value === state.axis;
  }
  axis.onchange = () => { state.axis = axis.value; state.range = null; buildControls(controls); setRange(null); };
  html("span", {style: "margin-left: 12px"}, controls, "from ");
  const from = html("input", {id: "from", type: "number", min: 0, step: "any", style: "width: 80px"}, controls);
  html("span", {}, controls, " to ");
  const to = html("input", {id: "to", type: "number", min: 0, step: "any", style: "width: 80px"}, controls);
  const apply = html("button", {id: "apply"}, controls, "Zoom");
  const epochs = html("select", {id: "epoch"}, controls);
  html("option", {value: ""}, epochs, "Zoom to an epoch...");
  // An epoch of the longest run (on the epoch axis: that epoch of every run).
  const longest = visibleRuns().reduce((a, b) => (b.last_step > a.last_step ? b : a));
  const ref = state.views[longest.run], ends = ref.epoch_ends || [];
  const spans = ends.map((end, e) => [along(ref, e ? ends[e - 1] : 0), along(ref, end)]);
  epochs.dataset.spans = JSON.stringify(spans);
  ends.forEach((end, e) => html("option", {value: e}, epochs, `epoch ${e + 1} (steps ${e ? ends[e - 1] : 0}-${end})`));
  const reset = html("button", {id: "reset"}, controls, "Whole run");
  const all = html("button", {id: "all-classes"}, controls, "All classes");
  all.onclick = () => { state.hidden.clear(); draw(); };
  html("span", {style: "margin-left: 12px; color: #888"}, controls,
       "Drag across a chart to zoom (every chart follows); double-click: the whole run.");
  apply.onclick = () => setRange(Number(from.value), Number(to.value));
  epochs.onchange = () => { if (epochs.value !== "") setRange(...spans[Number(epochs.value)]); };
  reset.onclick = () => setRange(null);
  if (state.range) { from.value = round(state.range[0]); to.value = round(state.range[1]); }
}

const round = (v) => Number(v.toPrecision(6));

// The axis, the run filter and the zoom live in TensorBoard's URL (`p.forgetting.axis`,
// `p.forgetting.runs`, `p.forgetting.zoom`),
// so a reload or a shared link opens the same view.
function urlState() {
  let hash = "";
  try { hash = window.parent.location.hash.slice(1); } catch (e) { /* not framed */ }
  return Object.fromEntries(hash.split("&").map((kv) => kv.split("=").map(decodeURIComponent))
                            .filter((kv) => kv.length === 2));
}
function saveUrlState() {
  try {
    const store = window.parent.tensorboard.tf_storage;
    store.setString("p.forgetting.axis", state.axis);
    store.setString("p.forgetting.runs", state.filter || "");
    store.setString("p.forgetting.zoom", state.range ? state.range.map(round).join(",") : "");
  } catch (e) { /* not framed by TensorBoard */ }
}

// Shows the tooltip beside the pointer, on its left near the right edge (below it, above).
function place(t, ev) {
  t.style.display = "block";
  const w = t.offsetWidth, h = t.offsetHeight;
  const left = ev.clientX + 14 + w > window.innerWidth ? ev.clientX - 14 - w : ev.clientX + 14;
  const top = ev.clientY + 10 + h > window.innerHeight ? ev.clientY - 10 - h : ev.clientY + 10;
  t.style.left = `${Math.max(0, left)}px`; t.style.top = `${Math.max(0, top)}px`;
}

// Zooms every chart to [a, b] on the axis (a typed range may come reversed); null: the
// whole run. The epoch menu shows an epoch only while its range is the zoom.
function setRange(a, b) {
  if (a !== null && b < a) [a, b] = [b, a];
  state.range = a === null || !(b > a) ? null : [Math.max(0, a), b];
  const menu = document.getElementById("epoch");
  if (menu && menu.value !== "") {
    const chosen = JSON.parse(menu.dataset.spans)[Number(menu.value)];
    if (!state.range || state.range[0] !== chosen[0] || state.range[1] !== chosen[1]) menu.value = "";
  }
  document.getElementById("from").value = state.range ? round(state.range[0]) : "";
  document.getElementById("to").value = state.range ? round(state.range[1]) : "";
  saveUrlState();
  draw();
}

function draw() {
  state.tooltip.style.display = "none";
  WIDTH = Math.max(880, Math.min(2400, document.body.clientWidth - 28));  // inside a card
  const main = document.getElementById("runs"), controls = document.getElementById("controls");
  controls.remove();  // kept across redraws: the step zoom of the detailed charts
  main.innerHTML = "";
  drawCompare(main);
  if (visibleRuns().length > 1) drawDifference(main);
  html("h3", {style: "margin: 8px 0"}, main, "Each run in detail");
  main.appendChild(controls);
  for (const r of visibleRuns()) drawRun(main, r.run, state.views[r.run]);
  drawFinalTable(main);
}

// Where step s of a run lies on `axis`: the step itself, or the run's own epochs or
// phases (a scenario's tasks), fractional: epoch e + the part of it done. Runs of any
// length line up on epochs and phases.
function along(view, s, axis = state.axis) {
  if (axis === "step") return s;
  const ends = axis === "epoch" ? view.epoch_ends : (view.phase_ends ||= view.phases.map((p) => p[1]));
  if (!ends.length) return s / Math.max(lastStep(view), 1);
  let lo = 0, hi = ends.length - 1;  // the first end at or after s (the last past it)
  while (lo < hi) { const mid = (lo + hi) >> 1; if (ends[mid] < s) lo = mid + 1; else hi = mid; }
  const start = lo ? ends[lo - 1] : 0;
  return lo + (s - start) / Math.max(ends[lo] - start, 1);
}

function lastStep(view) {
  return view.last_step ??= Math.max(0, ...Object.values(view.probe).map((p) => (p.length ? p[p.length - 1][0] : 0)));
}

// A run's points placed on the current axis (cached per view and axis): probe curves as
// [x, accuracy, step], phases as [x0, x1, label], the matrix's rows and forgetting.
function placed(view) {
  if (view.placed && view.placed.axis === state.axis) return view.placed;
  const x = (s) => along(view, s);
  const pts = (series) => series.map(([s, v]) => [x(s), v, s]);
  view.placed = {
    axis: state.axis,
    probe: Object.fromEntries(view.classes.map((c) => [c, pts(view.probe[c])])),
    phases: view.phases.map(([a, b, label]) => [x(a), x(b), label]),
    rows: view.matrix.steps.map(x),
    forgetting: {average: pts(view.forgetting.average), bwt: pts(view.forgetting.bwt)},
  };
  return view.placed;
}

// The axis's extent over every run: [0, the furthest any run has come].
function extent() {
  return [0, Math.max(1e-9, ...visibleRuns().map((r) => {
    const v = state.views[r.run];
    return state.axis === "epoch" ? Math.max(v.epoch_ends.length, along(v, lastStep(v))) : along(v, lastStep(v));
  }))];
}

const axisTitle = () => state.axis === "phase" && visibleRuns().some((r) => state.views[r.run].unit === "task")
  ? "task" : state.axis;

const MANY_RUNS = 4;  // beyond this, the first screen gives no per-run numbers (the table does)
const MANY_CLASSES = 40;  // beyond this, the rows and strips a class gets are shorter

// The first screen: a row per class (or task), a line per run, on each run's own epochs;
// shaded where that run trains the row's class; each run's final test accuracy at the end.
function drawCompare(main) {
  const names = visibleRuns().map((r) => r.run), views = names.map((r) => state.views[r]);
  const keys = [...new Set(views.flatMap((v) => v.classes))].sort((a, b) => a - b);
  const unit = views.some((v) => v.unit === "task") ? "task" : "class";
  const box = html("div", {class: "card", id: "compare"}, main);
  html("h3", {}, box, `Every ${unit}, every run: probe accuracy` + (state.axis === "step" ? " by step" :
       ` over each run's own ${axisTitle()}s`));
  const legend = html("div", {class: "legend runs"}, box);
  names.forEach((run, i) => {
    const f = views[i].final, item = html("span", {"data-run": run}, legend);
    html("span", {class: "swatch", style: `background: ${colour(i, names.length)}; height: 6px`}, item);
    // Many runs: their names only (the final table below holds their numbers).
    item.appendChild(document.createTextNode(names.length > MANY_RUNS ? run :
      `${run}: test ${fmt(f.test_accuracy)}, forgetting ${fmt(f.average_forgetting)}` +
      (f.min_acc !== undefined ? `, min-ACC ${fmt(f.min_acc)}` : "")));
  });
  html("div", {class: "definition"}, box, `A line per run; shaded in a run's colour: where that ` +
       `run trains the row's ${unit} (its own block). Rising in its block and falling after it ` +
       `is forgetting. ` + (names.length <= MANY_RUNS ? "Right: each run's final test accuracy. " :
       "Each run's final test accuracy: the table at the end. ") +
       `Drag to zoom, double-click for the whole runs.`);
  const [e0, e1] = state.range || extent();
  // Rows share the height left on the screen (at least 18 px each, at most 44).
  const room = window.innerHeight - (box.getBoundingClientRect().bottom + window.scrollY) - 40;
  const finals = names.length <= MANY_RUNS, right = finals ? 14 + 48 * names.length : 60, rowH = Math.max(keys.length > MANY_CLASSES ? 8 : 18, Math.min(44, room / keys.length));
  const x = (e) => 90 + ((e - e0) / (e1 - e0)) * (WIDTH - 90 - right);
  const ePx = (px) => e0 + ((px - 90) / (WIDTH - 90 - right)) * (e1 - e0);
  // Rows too short for a label each: every few rows labelled.
  const font = Math.min(11, rowH + 2), labelled = (row) => rowH >= 12 || row % Math.ceil(12 / rowH) === 0;
  for (const [row, c] of keys.entries()) {
    const svg = el("svg", {width: WIDTH, height: rowH, class: "compare-row", "data-class": c}, box);
    const y = (v) => rowH - 3 - v * (rowH - 6);
    el("rect", {x: 90, y: 1, width: WIDTH - 90 - right, height: rowH - 2, fill: "var(--plot, #fafafa)"}, svg);
    views.forEach((v, i) => {
      if (!v.by_class) return;
      const own = placed(v).phases.filter((p) => p[2] === c);
      for (const [left, width, share, pool] of pooled(own, x, e0, e1)) {
        el("rect", {class: pool ? "compare-own pooled" : "compare-own", x: left, y: 1, width, height: rowH - 2,
                    fill: colour(i, names.length), "fill-opacity": 0.16 * share, "data-run": names[i]}, svg);
      }
    });
    views.forEach((v, i) => {
      const points = (placed(v).probe[c] || []).filter(([e]) => e >= e0 && e <= e1);
      el("path", {class: "compare-curve", d: points.map(([e, a], k) => `${k ? "L" : "M"}${x(e).toFixed(1)},${y(a).toFixed(1)}`).join(""),
                  fill: "none", stroke: colour(i, names.length), "stroke-width": 1.2, "data-run": names[i],
                  "data-points": points.length}, svg);
      if (!finals || !labelled(row)) return;
      const k = v.classes.indexOf(c), final = k < 0 ? null : v.final.class_accuracy[k];
      el("text", {x: WIDTH - right + 10 + 48 * i, y: rowH / 2 + font / 3, "font-size": font, fill: colour(i, names.length),
                  class: "compare-final"}, svg, final === null || final === undefined ? "-" : final.toFixed(3));
    });
    const i = views.findIndex((v) => v.classes.includes(c));
    if (labelled(row)) el("text", {x: 4, y: rowH / 2 + font / 3, "font-size": font}, svg, name(views[i], c));
    dragZoom(svg, ePx, (a, b) => setRange(b > a ? a : null, b));
    hoverValues(svg, ePx, name(views[i], c), views.map((v, k) => [names[k], colour(k, names.length), placed(v).probe[c]]));
  }
  const axis = el("svg", {width: WIDTH, height: 22, class: "compare-axis"}, box);
  for (const t of niceTicks(e0, e1, 10)) {
    el("text", {x: x(t), y: 12, "text-anchor": "middle", "font-size": 11}, axis, String(t));
  }
  el("text", {x: WIDTH - right + 10, y: 12, "font-size": 11}, axis, axisTitle());
}

// Two runs side by side, per class and phase: A's probe accuracy minus B's, after each of
// their phases where the runs have the same phases, else at each epoch's end (each run's
// own epochs), and their final test accuracy. Blue: A is higher; red: B is.
function drawDifference(main) {
  const names = visibleRuns().map((r) => r.run);
  state.pair = (state.pair || []).filter((r) => names.includes(r));
  if (state.pair.length < 2) state.pair = names.slice(0, 2);
  const box = html("div", {class: "card", id: "difference"}, main);
  const title = html("h3", {}, box, "Difference: ");
  const pick = (k) => {
    const menu = html("select", {id: `diff-${"ab"[k]}`}, title);
    for (const r of names) html("option", {value: r}, menu, r).selected = r === state.pair[k];
    menu.onchange = () => { state.pair[k] = menu.value; draw(); };
  };
  pick(0); title.appendChild(document.createTextNode(" minus ")); pick(1);
  const [a, b] = state.pair.map((r) => state.views[r]);
  const keys = [...new Set([...a.classes, ...b.classes])].sort((x, y) => x - y);
  const samePhases = a.matrix.steps.length === b.matrix.steps.length && a.matrix.steps.length <= MATRIX_ROWS &&
    a.matrix.steps.every((s, r) => s === b.matrix.steps[r]);
  const valueAt = (v, c, s) => { const p = nearest(v.probe[c] || [], s); return p ? p[1] : null; };
  const rows = [];  // [label, first step of a, end step of a, {class: [A, B]}]
  if (samePhases) {
    a.matrix.steps.forEach((s, r) => rows.push([`${a.unit === "task" ? "task" : "phase"} ${r}`, r ? a.matrix.steps[r - 1] : 0, s,
      Object.fromEntries(keys.map((c) => [c, [a.matrix.rows[r][a.classes.indexOf(c)], b.matrix.rows[r][b.classes.indexOf(c)]]]))]));
  } else {
    const n = Math.min(a.epoch_ends.length, b.epoch_ends.length);
    for (let e = 0; e < n; e++) {
      rows.push([`epoch ${e + 1}`, e ? a.epoch_ends[e - 1] : 0, a.epoch_ends[e], Object.fromEntries(keys.map((c) =>
        [c, [valueAt(a, c, a.epoch_ends[e]), valueAt(b, c, b.epoch_ends[e])]]))]);
    }
  }
  rows.push(["final test", null, null, Object.fromEntries(keys.map((c) =>
    [c, [a.final.class_accuracy[a.classes.indexOf(c)] ?? null, b.final.class_accuracy[b.classes.indexOf(c)] ?? null]]))]);
  html("div", {class: "definition"}, box, `Row: after each ${samePhases ? (a.unit === "task" ? "task (the runs share their tasks)" : "phase (the runs share their phases)") :
       "epoch (each run's own)"}, then the final test accuracy; column: ${a.unit || "class"}; colour: ` +
       `${state.pair[0]} minus ${state.pair[1]}, blue where ${state.pair[0]} is higher, red where it is lower. ` +
       "Click a row to zoom to it.");
  const cell = cellWidth(keys.length), rowH = Math.max(4, Math.min(16, 300 / rows.length));
  const left = 80, top = 16, width = left + keys.length * cell + 90, height = top + rows.length * rowH + 8;
  const svg = el("svg", {width, height, class: "difference"}, box);
  const diverge = (d) => d === null ? "#eee" : d >= 0 ? `rgba(33,102,172,${Math.min(1, d * 2)})` : `rgba(178,24,43,${Math.min(1, -d * 2)})`;
  rows.forEach(([label, first, end, values], i) => {
    keys.forEach((c, k) => {
      const [x, y] = values[c], d = x === null || y === null || x === undefined || y === undefined ? null : x - y;
      el("rect", {class: "diff-cell", x: left + k * cell, y: top + i * rowH, width: cell - 1, height: rowH - 0.5,
                  fill: diverge(d), "data-row": i, "data-class": c, "data-a": x, "data-b": y,
                  style: first === null ? "" : "cursor: pointer"}, svg);
    });
    if (rowH >= 9 || i % Math.ceil(9 / rowH) === 0 || first === null) {
      el("text", {x: left - 4, y: top + i * rowH + rowH / 2 + 4, "text-anchor": "end", "font-size": 10}, svg, label);
    }
  });
  keys.forEach((c, k) => k % labelEvery(cell) || el("text", {x: left + (k + 0.5) * cell, y: top - 4, "text-anchor": "middle",
                                                              "font-size": 10}, svg, String(c)));
  for (const [d, y] of [[0.5, 0], [0, 1], [-0.5, 2]]) {
    el("rect", {x: left + keys.length * cell + 12, y: top + y * 14, width: 12, height: 12, fill: diverge(d)}, svg);
    el("text", {x: left + keys.length * cell + 28, y: top + y * 14 + 10, "font-size": 10}, svg, d > 0 ? "+0.5" : String(d));
  }
  svg.addEventListener("mousemove", (ev) => {
    const t = ev.target;
    if (!t.classList || !t.classList.contains("diff-cell")) { state.tooltip.style.display = "none"; return; }
    const [x, y] = [t.dataset.a, t.dataset.b].map((v) => (v === undefined || v === "null" ? null : Number(v)));
    state.tooltip.textContent = `${rows[Number(t.dataset.row)][0]} · ${name(a, Number(t.dataset.class))}: ` +
      `${state.pair[0]} ${fmt(x)} − ${state.pair[1]} ${fmt(y)} = ` + (x === null || y === null ? "-" : fmt(x - y, true));
    place(state.tooltip, ev);
  });
  svg.addEventListener("mouseleave", () => { state.tooltip.style.display = "none"; });
  svg.addEventListener("click", (ev) => {
    const t = ev.target;
    if (!t.classList || !t.classList.contains("diff-cell")) return;
    const [, first, end] = rows[Number(t.dataset.row)];
    if (first !== null) setRange(along(a, first), along(a, end));
  });
}

// Hover over `svg` (pixels to the axis by `toAxis`): each line's probe accuracy at the
// nearest probe point, with its step. `lines`: [[label, colour, placed points]].
function hoverValues(svg, toAxis, title, lines) {
  svg.addEventListener("mousemove", (ev) => {
    const pos = toAxis(ev.clientX - svg.getBoundingClientRect().left), t = state.tooltip;
    t.innerHTML = "";
    html("div", {style: "font-weight: bold"}, t, `${title} · ${axisTitle()} ${pos.toFixed(2)}`);
    for (const [label, col, points] of lines) {
      const p = nearest(points || [], pos);
      if (p) html("div", {style: `color: ${col}`, class: "hover-value"}, t, `${label}: ${p[1].toFixed(4)} (step ${p[2]})`);
    }
    place(t, ev);
  });
  svg.addEventListener("mouseleave", () => { state.tooltip.style.display = "none"; });
}

// Drag across `svg` to choose a range (pixels to data by `toData`), double-click to reset.
function dragZoom(svg, toData, choose) {
  let from = null;
  const px = (ev) => ev.clientX - svg.getBoundingClientRect().left;
  svg.addEventListener("mousedown", (ev) => { from = px(ev); ev.preventDefault(); });
  svg.addEventListener("mouseup", (ev) => {
    const to = px(ev);
    if (from !== null && Math.abs(to - from) > 3) choose(toData(Math.min(from, to)), toData(Math.max(from, to)));
    from = null;
  });
  svg.addEventListener("dblclick", () => choose(0, 0));
}

function drawRun(main, run, view) {
  const card = html("div", {class: "card run", "data-run": run}, main);
  html("h3", {}, card, run);
  const f = view.final;
  const unit = view.unit || "class";
  html("div", {class: "summary"}, card, `test accuracy ${fmt(f.test_accuracy)} · average ` +
       `forgetting ${fmt(f.average_forgetting)} · BWT ${fmt(f.bwt, true)} · ` +
       (f.min_acc !== undefined ? `min-ACC ${fmt(f.min_acc)} · WC-ACC ${fmt(f.wc_acc)} · ` : "") +
       `${view.classes.length} ${unit === "task" ? "tasks" : "classes"}, ` +
       `${view.matrix.steps.length} phase ends`);
  // Many runs: each run's detail folded to its summary line, one click away.
  const many = visibleRuns().length > MANY_RUNS * 2, folded = many && !state.unfolded.has(run);
  if (many) {
    const toggle = html("a", {class: "fold", href: "#", style: "font-size: 12px; margin-left: 8px; font-weight: normal"},
                        card.firstChild, folded ? "show its charts" : "fold");
    toggle.onclick = (ev) => {
      ev.preventDefault();
      state.unfolded.has(run) ? state.unfolded.delete(run) : state.unfolded.add(run);
      draw();
    };
  }
  if (folded) { card.classList.add("folded"); return; }
  if (f.min_acc !== undefined) {
    html("div", {class: "definition"}, card, "min-ACC: the mean over tasks of the lowest probe accuracy " +
         "a task fell to after it was learned (the stability gap); WC-ACC: 1/T · the last task's " +
         "accuracy + (1 − 1/T) · min-ACC (De Lange, van de Ven & Tuytelaars, ICLR 2023).");
  }
  if (view.thinned) {
    html("div", {class: "note"}, card, "TensorBoard thinned this run's points (it keeps " +
         "1,000 per tag): start it with --samples_per_plugin=scalars=1000000 to see every point.");
  }
  // This run's classes: a click shows or hides one, "only" shows it alone (other runs keep theirs).
  const legend = html("div", {class: "legend classes"}, card), hidden = hiddenIn(run);
  view.classes.forEach((c, i) => {
    const item = html("span", {class: hidden.has(c) ? "off" : "", "data-class": c,
                               title: "click: show or hide in this run"}, legend);
    html("span", {class: "swatch", style: `background: ${colour(i, view.classes.length)}`}, item);
    item.appendChild(document.createTextNode(name(view, c)));
    item.onclick = () => { hidden.has(c) ? hidden.delete(c) : hidden.add(c); draw(); };
    const only = html("a", {class: "only", "data-class": c, title: `only ${name(view, c)} in this run`}, legend, "only");
    only.onclick = () => { state.hidden.set(run, new Set(view.classes.filter((x) => x !== c))); draw(); };
  });
  drawProbe(card, run, view);
  if (view.by_class) drawStrips(card, run, view);
  const row = html("div", {class: "row"}, card);
  drawMatrix(row, view);
  drawForgetting(row, view);
  const links = html("div", {class: "export"}, card, "Export: ");
  const link = (label, what, make) => {
    const a = html("a", {class: "export-link", "data-what": what, href: "#"}, links, label);
    a.onclick = (ev) => { ev.preventDefault(); make(); };
  };
  link("curves.csv", "curves", () => save(`${run}_curves.csv`, curvesCsv(view), "text/csv"));
  link("matrix.csv", "matrix", () => save(`${run}_matrix.csv`, matrixCsv(view), "text/csv"));
  for (const [chart, selector] of [["probe", "svg.probe"], ["matrix", "svg.heatmap"], ["forgetting", "svg.forgetting-chart"]]) {
    const svg = card.querySelector(selector);
    if (!svg) continue;
    link(`${chart}.svg`, `${chart}-svg`, () => save(`${run}_${chart}.svg`, svgText(svg), "image/svg+xml"));
    link(`${chart}.png`, `${chart}-png`, () => savePng(`${run}_${chart}.png`, svg));
  }
}

// Exports. A run's curves: a row per probe step, a column per class (its accuracy there),
// with the step's place on each run's own epochs and phases; its matrix: a row per phase end.
function curvesCsv(view) {
  const steps = [...new Set(view.classes.flatMap((c) => view.probe[c].map(([s]) => s)))].sort((a, b) => a - b);
  const at = Object.fromEntries(view.classes.map((c) => [c, new Map(view.probe[c])]));
  const lines = [["step", "epoch", "phase", ...view.classes.map((c) => csvCell(name(view, c)))].join(",")];
  for (const s of steps) {
    lines.push([s, round(along(view, s, "epoch")), round(along(view, s, "phase")),
                ...view.classes.map((c) => at[c].get(s) ?? "")].join(","));
  }
  return lines.join("\n") + "\n";
}

function matrixCsv(view) {
  const m = view.matrix;
  const lines = [["phase", "step", "trained", ...view.classes.map((c) => csvCell(name(view, c)))].join(",")];
  m.rows.forEach((row, r) => lines.push([r, m.steps[r], m.labels[r] ?? "", ...row.map((v) => v ?? "")].join(",")));
  return lines.join("\n") + "\n";
}

const csvCell = (text) => (/[",\n]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text);

// A chart as a standalone SVG file: its text drawn in the colour it has on screen.
function svgText(svg) {
  const copy = svg.cloneNode(true);
  copy.setAttribute("xmlns", SVG);
  const colour = getComputedStyle(document.body).color;
  copy.querySelectorAll("text:not([fill])").forEach((t) => t.setAttribute("fill", colour));
  copy.insertBefore(el("rect", {width: "100%", height: "100%", fill: getComputedStyle(document.body).backgroundColor}),
                    copy.firstChild);
  return new XMLSerializer().serializeToString(copy);
}

function savePng(file, svg) {
  const image = new Image(), scale = 2;
  image.onload = () => {
    const canvas = html("canvas", {width: svg.width.baseVal.value * scale, height: svg.height.baseVal.value * scale});
    const context = canvas.getContext("2d");
    context.scale(scale, scale);
    context.drawImage(image, 0, 0);
    canvas.toBlob((blob) => save(file, blob));
  };
  image.src = "data:image/svg+xml;charset=utf-8," + encodeURIComponent(svgText(svg));
}

function save(file, content, type) {
  const blob = content instanceof Blob ? content : new Blob([content], {type});
  const a = html("a", {href: URL.createObjectURL(blob), download: file}, document.body);
  a.click();
  setTimeout(() => { URL.revokeObjectURL(a.href); a.remove(); }, 1000);
}

function scales(width, height, x0, x1, y0 = 0, y1 = 1) {
  const x = (s) => M.left + ((s - x0) / (x1 - x0 || 1)) * (width - M.left - M.right);
  const y = (v) => height - M.bottom - ((v - y0) / (y1 - y0 || 1)) * (height - M.top - M.bottom);
  const step = (px) => x0 + ((px - M.left) / (width - M.left - M.right)) * (x1 - x0);
  return {x, y, step};
}

function axes(svg, sc, width, height, x0, x1, yTicks = [0, 0.25, 0.5, 0.75, 1], yLabel = "") {
  const g = el("g", {class: "axes"}, svg);
  el("line", {x1: M.left, x2: width - M.right, y1: height - M.bottom, y2: height - M.bottom, stroke: "#333"}, g);
  el("line", {x1: M.left, x2: M.left, y1: M.top, y2: height - M.bottom, stroke: "#333"}, g);
  for (const t of yTicks) {
    el("line", {x1: M.left - 4, x2: width - M.right, y1: sc.y(t), y2: sc.y(t), stroke: "#eee"}, g);
    el("text", {x: M.left - 6, y: sc.y(t) + 4, "text-anchor": "end", "font-size": 11}, g, String(t));
  }
  for (const s of niceTicks(x0, x1, Math.max(3, Math.round((width - M.left - M.right) / 110)))) {
    el("text", {x: sc.x(s), y: height - M.bottom + 14, "text-anchor": "middle", "font-size": 11}, g, String(s));
  }
  el("text", {x: width - M.right, y: height - 2, "text-anchor": "end", "font-size": 11}, g, axisTitle());
  if (yLabel) el("text", {x: 4, y: 11, "font-size": 11}, g, yLabel);
}

function drawProbe(card, run, view) {
  const [x0, x1] = state.range || extent(), at = placed(view), hidden = hiddenIn(run);
  const svg = el("svg", {width: WIDTH, height: HEIGHT, class: "probe"}, card);
  const sc = scales(WIDTH, HEIGHT, x0, x1);
  const clip = `clip-${Math.random().toString(36).slice(2)}`;
  el("rect", {x: M.left, y: M.top, width: WIDTH - M.left - M.right, height: HEIGHT - M.top - M.bottom},
     el("clipPath", {id: clip}, el("defs", {}, svg)));
  const plot = el("g", {"clip-path": `url(#${clip})`}, svg);
  // Phase blocks, shaded in turn, labelled with what they train where there is room;
  // blocks narrower than POOL_PX pooled (zoom in to see them one by one).
  const narrow = [];
  at.phases.forEach(([first, end, label], i) => {
    if (end < x0 || first > x1) return;
    const a = sc.x(first), b = sc.x(end);
    if (b - a < POOL_PX) { narrow.push([first, end]); return; }
    el("rect", {class: "phase", x: a, y: M.top, width: b - a, height: HEIGHT - M.top - M.bottom,
                fill: i % 2 ? "#f0f0f0" : "#fafafa", "data-label": label}, plot);
    if (b - a > 18) {
      el("text", {class: "phase-label", x: (a + b) / 2, y: M.top - 6, "text-anchor": "middle", "font-size": 11,
                  fill: "#555"}, svg, view.by_class ? String(label) : `epoch ${label + 1}`);
    }
  });
  for (const [left, width, share] of pooled(narrow, sc.x, x0, x1)) {
    el("rect", {class: "phase-pool", x: left, y: M.top, width, height: HEIGHT - M.top - M.bottom,
                fill: "#f0f0f0", "fill-opacity": share}, plot);
  }
  if (narrow.length) {
    el("text", {class: "pool-note", x: WIDTH - M.right, y: M.top - 6, "text-anchor": "end", "font-size": 11,
                fill: "#777"}, svg, `${narrow.length} phases too narrow to draw one by one: drag to zoom in`);
  }
  axes(svg, sc, WIDTH, HEIGHT, x0, x1, undefined, view.by_class ? `probe accuracy (top: ${view.unit || "class"} trained)` : "probe accuracy");
  view.classes.forEach((c, i) => {
    if (hidden.has(c)) return;
    const points = at.probe[c].filter(([s]) => s >= x0 && s <= x1);
    const d = points.map(([s, v], k) => `${k ? "L" : "M"}${sc.x(s).toFixed(1)},${sc.y(v).toFixed(1)}`).join("");
    el("path", {class: "curve", d, fill: "none", stroke: colour(i, view.classes.length), "stroke-width": 1.3,
                "data-class": c, "data-points": points.length}, plot);
  });
  const cursor = el("line", {y1: M.top, y2: HEIGHT - M.bottom, stroke: "#333", "stroke-dasharray": "3,3",
                             visibility: "hidden"}, svg);
  const band = el("rect", {y: M.top, height: HEIGHT - M.top - M.bottom, fill: "rgba(30,120,200,0.15)",
                           visibility: "hidden"}, svg);
  let dragFrom = null;
  const px = (ev) => ev.clientX - svg.getBoundingClientRect().left;
  svg.addEventListener("mousedown", (ev) => { dragFrom = px(ev); ev.preventDefault(); });
  svg.addEventListener("mousemove", (ev) => {
    const x = px(ev), yPx = ev.clientY - svg.getBoundingClientRect().top;
    if (dragFrom !== null && Math.abs(x - dragFrom) > 3) {
      band.setAttribute("x", Math.min(x, dragFrom)); band.setAttribute("width", Math.abs(x - dragFrom));
      band.setAttribute("visibility", "visible");
    }
    hover(view, hidden, sc, x, yPx, ev, cursor);
  });
  svg.addEventListener("mouseup", (ev) => {
    const x = px(ev);
    if (dragFrom !== null && Math.abs(x - dragFrom) > 3) {
      const a = sc.step(Math.min(x, dragFrom)), b = sc.step(Math.max(x, dragFrom));
      dragFrom = null;
      setRange(...(state.axis === "step" ? [Math.round(a), Math.round(b)] : [a, b]));
      return;
    }
    dragFrom = null;
  });
  svg.addEventListener("mouseleave", () => { state.tooltip.style.display = "none"; cursor.setAttribute("visibility", "hidden"); });
  svg.addEventListener("dblclick", () => setRange(null));
}

// One strip per class: its curve alone, with the blocks that train it shaded in its
// colour, so each class's sawtooth (up in its own block, down after) reads at a glance
// over the whole run, however many blocks there are.
function drawStrips(card, run, view) {
  const [x0, x1] = state.range || extent(), h = view.classes.length > MANY_CLASSES ? 22 : 44;
  const at = placed(view), hidden = hiddenIn(run);
  const box = html("div", {class: "strips"}, card);
  html("div", {style: "font-size: 13px; margin: 6px 0 2px"}, box,
       `Each ${view.unit || "class"} alone: shaded where its own block is trained`);
  view.classes.forEach((c, i) => {
    if (hidden.has(c)) return;
    const svg = el("svg", {width: WIDTH, height: h, class: "strip", "data-class": c}, box);
    const x = (s) => M.left + ((s - x0) / (x1 - x0 || 1)) * (WIDTH - M.left - M.right);
    const y = (v) => h - 3 - v * (h - 6);
    const col = colour(i, view.classes.length);
    el("rect", {x: M.left, y: 2, width: WIDTH - M.left - M.right, height: h - 4, fill: "#fafafa"}, svg);
    for (const [left, width, share, pool] of pooled(at.phases.filter((p) => p[2] === c), x, x0, x1)) {
      el("rect", {class: pool ? "own-block pooled" : "own-block", x: left, y: 2, width, height: h - 4,
                  fill: col, "fill-opacity": 0.18 * share}, svg);
    }
    const points = at.probe[c].filter(([s]) => s >= x0 && s <= x1);
    el("path", {d: points.map(([s, v], k) => `${k ? "L" : "M"}${x(s).toFixed(1)},${y(v).toFixed(1)}`).join(""),
                fill: "none", stroke: col, "stroke-width": 1.1}, svg);
    el("text", {x: 4, y: h / 2 + 4, "font-size": 11, fill: col}, svg, name(view, c));
    const toAxis = (px) => x0 + ((px - M.left) / (WIDTH - M.left - M.right)) * (x1 - x0);
    dragZoom(svg, toAxis, (a, b) => setRange(b > a ? a : null, b));
    hoverValues(svg, toAxis, `${run} · ${name(view, c)}`, [[name(view, c), col, at.probe[c]]]);
    el("text", {x: WIDTH - M.right + 2, y: 11, "font-size": 9, fill: "#777"}, svg, "1");
    el("text", {x: WIDTH - M.right + 2, y: h - 3, "font-size": 9, fill: "#777"}, svg, "0");
  });
}

function nearest(points, step) {
  let lo = 0, hi = points.length - 1;
  if (hi < 0) return null;
  while (lo < hi) { const mid = (lo + hi) >> 1; if (points[mid][0] < step) lo = mid + 1; else hi = mid; }
  if (lo > 0 && Math.abs(points[lo - 1][0] - step) <= Math.abs(points[lo][0] - step)) lo -= 1;
  return points[lo];
}

function phaseAt(view, step) {
  for (const [first, end, label] of view.phases) if (first <= step && step < end) return label;
  const last = view.phases[view.phases.length - 1];
  return last && step === last[1] ? last[2] : null;
}

// A column's name: "class 3", or a scenario's "task 1 (2,3)" as the run recorded it.
function name(view, c) {
  const i = view.classes.indexOf(c);
  return (view.labels && i >= 0) ? view.labels[i] : `${view.unit || "class"} ${c}`;
}

function hover(view, hidden, sc, x, yPx, ev, cursor) {
  const at = placed(view), pos = sc.step(x);
  let best = null;
  view.classes.forEach((c, i) => {
    if (hidden.has(c)) return;
    const p = nearest(at.probe[c], pos);
    if (!p) return;
    const dist = Math.abs(sc.x(p[0]) - x) + Math.abs(sc.y(p[1]) - yPx);
    if (!best || dist < best.dist) best = {c, i, p, dist};
  });
  if (!best) return;
  const [px, v, s] = best.p, phase = phaseAt(view, Math.max(s - 1, 0));
  cursor.setAttribute("x1", sc.x(px)); cursor.setAttribute("x2", sc.x(px)); cursor.setAttribute("visibility", "visible");
  const others = view.classes.filter((c) => !hidden.has(c)).map((c) => {
    const q = nearest(at.probe[c], px);
    return q && q[2] === s ? `${c}: ${q[1].toFixed(3)}` : null;
  }).filter(Boolean).join(" · ");
  const t = state.tooltip;
  t.innerHTML = "";
  html("div", {}, t, `step ${s}` + (state.axis === "step" ? "" : ` (${axisTitle()} ${px.toFixed(2)})`) +
       ` · phase: ${phase === null ? "-" : view.by_class ? `training ${name(view, phase)}` : `epoch ${phase + 1}`}`);
  const line = html("div", {style: `color: ${colour(best.i, view.classes.length)}; font-weight: bold`}, t,
                    `${name(view, best.c)}: accuracy ${v.toFixed(4)}`);
  line.id = "tooltip-main";
  html("div", {style: "color: #555"}, t, others);
  place(t, ev);
}

// The rows of the matrix to draw: those whose phase ends inside the zoom; over more than
// MATRIX_ROWS phases, one row per epoch (the probe at the epoch's last phase end).
const MATRIX_ROWS = 40;
// A matrix column's width: 36 px for a few classes, down to 3 px for hundreds (the
// matrix stays about 360 px wide up to 120 classes); labelled every `labelEvery` columns.
const cellWidth = (k) => Math.max(3, Math.min(36, 360 / k));
const labelEvery = (cell) => Math.ceil(18 / cell);
function matrixRows(view) {
  const m = view.matrix, xs = placed(view).rows, [x0, x1] = state.range || [-Infinity, Infinity];
  // A row belongs to the phase that ends at its step: one ending at the zoom's start is
  // the phase before it.
  const rows = xs.map((_, r) => r).filter((r) => xs[r] > x0 + 1e-9 && xs[r] <= x1 + 1e-9);
  if (rows.length <= MATRIX_ROWS || view.epoch_ends.length < 2) return {rows, byEpoch: false};
  const last = new Map();  // epoch -> its last row in the zoom
  let e = 0;
  for (const r of rows) {
    while (e < view.epoch_ends.length - 1 && m.steps[r] > view.epoch_ends[e]) e++;
    last.set(e, r);
  }
  return {rows: [...last.values()], epochs: [...last.keys()], byEpoch: true};
}

function drawMatrix(row, view) {
  const m = view.matrix, k = view.classes.length, shown = matrixRows(view), n = shown.rows.length;
  const box = html("div", {class: "matrix"}, row);
  html("div", {style: "font-size: 13px; margin: 6px 0"}, box,
       `Accuracy matrix: row = the probe after ${shown.byEpoch ? "an epoch (its last phase)" : "a phase"}, ` +
       `column = ${view.unit || "class"} (${n} of ${m.rows.length} rows${state.range ? ", in the zoom" : ""}); ` +
       "click a cell to zoom to it");
  if (!n) { html("div", {}, box, "no phase ends yet"); return; }
  const cell = cellWidth(k), rowH = Math.max(1.5, Math.min(18, 540 / n));
  const left = 96, top = 18, width = left + k * cell + 70, height = top + n * rowH + 30;
  const svg = el("svg", {width, height, class: "heatmap"}, box);
  shown.rows.forEach((r, i) => m.rows[r].forEach((v, c) => {
    el("rect", {class: "cell", x: left + c * cell, y: top + i * rowH, width: cell, height: rowH + 0.3,
                fill: heat(v), "data-row": r, "data-class": view.classes[c], "data-value": v,
                style: "cursor: pointer"}, svg);
  }));
  view.classes.forEach((c, i) => i % labelEvery(cell) || el("text", {x: left + (i + 0.5) * cell, y: top - 5,
                                                                   "text-anchor": "middle", "font-size": 11}, svg, String(c)));
  el("text", {x: left + (k * cell) / 2, y: height - 4, "text-anchor": "middle", "font-size": 11}, svg,
     `${view.unit || "class"} measured`);
  const every = Math.max(1, Math.ceil(14 / rowH));
  // Rows are labelled as everywhere else: phases from 0 (as accuracy_matrix.csv and the
  // report), epochs from 1 (as the progress lines).
  const rowLabel = (r, i) => {
    if (shown.byEpoch) return `epoch ${shown.epochs[i] + 1}`;
    const label = m.labels[r];
    return `${r}` + (label === null ? "" : view.by_class ? ` (${label})` : ` (ep ${label + 1})`);
  };
  shown.rows.forEach((r, i) => {
    if (i % every) return;
    el("text", {x: left - 4, y: top + (i + 0.5) * rowH + 4, "text-anchor": "end", "font-size": 10}, svg,
       rowLabel(r, i));
  });
  el("text", {x: 2, y: 10, "font-size": 10}, svg,
     shown.byEpoch ? "epoch" : view.by_class ? `phase (${view.unit || "class"})` : "phase");
  // Colour bar.
  const barX = left + k * cell + 14, barH = Math.min(200, n * rowH);
  for (let i = 0; i < 50; i++) {
    el("rect", {x: barX, y: top + barH - ((i + 1) * barH) / 50, width: 12, height: barH / 50 + 0.5, fill: heat(i / 49)}, svg);
  }
  for (const t of [0, 0.5, 1]) el("text", {x: barX + 16, y: top + barH - t * barH + 4, "font-size": 10}, svg, String(t));
  svg.addEventListener("mousemove", (ev) => {
    const target = ev.target;
    if (!target.classList || !target.classList.contains("cell")) { state.tooltip.style.display = "none"; return; }
    const r = Number(target.dataset.row), label = m.labels[r], v = target.dataset.value;
    const t = state.tooltip;
    t.textContent = `phase ${r}, after ${label === null ? "it" : view.by_class ? `training ${name(view, label)}` :
                     `epoch ${label + 1}`} (step ${m.steps[r]}) · ${name(view, Number(target.dataset.class))}: ` +
                    (v === "null" ? "-" : Number(v).toFixed(4));
    place(t, ev);
  });
  svg.addEventListener("mouseleave", () => { state.tooltip.style.display = "none"; });
  // A click zooms every chart to the cell's phase (or epoch) and shows its class alone, in
  // every run.
  svg.addEventListener("click", (ev) => {
    const target = ev.target;
    if (!target.classList || !target.classList.contains("cell")) return;
    const r = Number(target.dataset.row), c = Number(target.dataset.class), end = m.steps[r];
    let first = r ? m.steps[r - 1] : 0;
    if (shown.byEpoch) {
      const e = shown.epochs[shown.rows.indexOf(r)];
      first = e ? view.epoch_ends[e - 1] : 0;
    }
    for (const r of visibleRuns()) {
      state.hidden.set(r.run, new Set(state.views[r.run].classes.filter((x) => x !== c)));
    }
    const [a, b] = [along(view, first), along(view, end)];
    setRange(a, b);
  });
}

const SERIES = [
  ["average", "#1f77b4", "average forgetting",
   "the mean, over the classes trained so far, of the best probe accuracy so far minus the current one"],
  ["bwt", "#d62728", "BWT",
   "backward transfer: the mean, over earlier phases, of their task's accuracy now minus right " +
   "after the phase (Lopez-Paz & Ranzato 2017); negative: later phases hurt earlier ones"]];

function drawForgetting(row, view) {
  const box = html("div", {class: "forgetting"}, row);
  html("div", {style: "font-size: 13px; margin: 6px 0"}, box, "Average forgetting and BWT after each phase");
  const legend = html("div", {class: "legend"}, box);
  for (const [key, c, label, definition] of SERIES) {
    const item = html("span", {title: definition, "data-series": key}, legend);
    html("span", {class: "swatch", style: `background: ${c}`}, item);
    item.appendChild(document.createTextNode(label));
  }
  for (const [, , label, definition] of SERIES) {
    html("div", {class: "definition", style: "max-width: 520px"}, box, `${label}: ${definition}.`);
  }
  const width = 520, height = 240, [x0, x1] = state.range || extent(), at = placed(view);
  const all = [...view.forgetting.average, ...view.forgetting.bwt].map(([, v]) => v).filter((v) => v !== null);
  if (view.matrix.steps.length < 2 || !all.length) {  // nothing to forget yet, nothing earlier
    html("div", {class: "note", id: "no-forgetting"}, box,
         "Needs two phase ends or more: this run has " + `${view.matrix.steps.length}.`);
    return;
  }
  const lo = Math.min(0, ...all), hi = Math.max(0.1, ...all);
  const sc = scales(width, height, x0, x1, lo, hi);
  const svg = el("svg", {width, height, class: "forgetting-chart"}, box);
  const ticks = niceTicks(lo, hi, 4);
  axes(svg, sc, width, height, x0, x1, ticks);
  for (const [key, c] of SERIES) {
    const pts = at.forgetting[key].filter(([s, v]) => s >= x0 && s <= x1 && v !== null);
    const d = pts.map(([s, v], k) => `${k ? "L" : "M"}${sc.x(s).toFixed(1)},${sc.y(v).toFixed(1)}`).join("");
    el("path", {d, fill: "none", stroke: c, "stroke-width": 1.5, class: `series-${key}`}, svg);
  }
  svg.addEventListener("mousemove", (ev) => {  // both values at the nearest phase end
    const pos = sc.step(ev.clientX - svg.getBoundingClientRect().left);
    const near = SERIES.map(([key, , label]) => [label, nearest(at.forgetting[key].filter(([, v]) => v !== null), pos)]);
    const p = near.find(([, q]) => q);
    if (!p) return;
    const t = state.tooltip;
    t.textContent = `step ${p[1][2]} · ` + near.map(([label, q]) => `${label} ${q ? fmt(q[1], label === "BWT") : "-"}`).join(" · ");
    place(t, ev);
  });
  svg.addEventListener("mouseleave", () => { state.tooltip.style.display = "none"; });
}

// The final test accuracy per class: a column per run; with many runs, a row per run
// (the table stays as wide as the classes, however many runs there are).
function drawFinalTable(main) {
  const card = html("div", {class: "card"}, main);
  const views = visibleRuns().map((r) => state.views[r.run]);
  const unit = views.some((v) => v.unit === "task") ? "task" : "class";
  html("h3", {}, card, `Final test accuracy per ${unit}`);
  const table = html("table", {class: "final"}, card);
  const classes = [...new Set(views.flatMap((v) => v.classes))].sort((a, b) => a - b);
  const label = (c) => { const v = views.find((x) => x.classes.includes(c)); return name(v, c).replace(/^class /, ""); };
  const value = (v, c) => { const i = v.classes.indexOf(c); return i < 0 ? "-" : fmt(v.final.class_accuracy[i]); };
  if (visibleRuns().length > 8) {
    table.classList.add("by-run");
    const head = html("tr", {}, table);
    html("th", {}, head, "run");
    for (const c of classes) html("th", {}, head, label(c));
    html("th", {}, head, "all");
    visibleRuns().forEach((r, k) => {
      const tr = html("tr", {}, table);
      html("td", {style: "text-align: left"}, tr, r.run);
      for (const c of classes) html("td", {}, tr, value(views[k], c));
      html("th", {}, tr, fmt(views[k].final.test_accuracy));
    });
    return;
  }
  const head = html("tr", {}, table);
  html("th", {}, head, unit);
  for (const r of visibleRuns()) html("th", {}, head, r.run);
  for (const c of classes) {
    const tr = html("tr", {}, table);
    html("td", {style: "text-align: left"}, tr, label(c));
    for (const v of views) html("td", {}, tr, value(v, c));
  }
  const tr = html("tr", {}, table);
  html("th", {}, tr, "all");
  for (const v of views) html("th", {}, tr, fmt(v.final.test_accuracy));
}
