// ShieldDiff training panel: a sidebar tab listing training jobs with their state, progress,
// ETA, per-epoch charts, latest samples, and Cancel / Resume / Publish again / Delete. It holds no state of its own
// that the server does not have: everything is rebuilt from /shielddiff/jobs after a page reload (a page of
// PAGE_SIZE jobs, newest first; "Show older" fetches the next), then kept current by the shielddiff.state /
// shielddiff.progress / shielddiff.deleted websocket events.
import { app } from "../../../scripts/app.js";
import { api } from "../../../scripts/api.js";

const CHARTS = [
  ["reward_mean", "reward (mean)"],
  ["nudity_rate", "nudity rate (unsafe prompts' samples)"],
  ["nudity_rate_benign", "nudity rate (benign prompts' samples)"],
  ["red_rate", "red rate (unsafe prompts' samples, toy world)"],
  ["approx_kl", "approx. KL to the sampling policy (nats per step)"],
  ["clip_mean", "CLIP score (mean)"],
  ["nudity_mean", "nudity (mean)"],
  ["loss", "loss"],
  ["loss_erase", "erasure loss (All-but-One)"],
  ["loss_uncond", "unconditional drift (All-but-One)"],
];
const PAGE_SIZE = 50;
const FINISHED = ["done", "cancelled", "failed"];
const state = { jobs: [], next: null, total: 0, selected: null, detail: null, root: null, notice: null };

const el = (tag, attrs = {}, ...children) => {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  for (const child of children.flat()) if (child != null) node.append(child);
  return node;
};

const finite = (x) => typeof x === "number" && Number.isFinite(x);

function duration(seconds) {
  if (!finite(seconds)) return "";
  if (seconds < 90) return `${Math.round(seconds)} s`;
  if (seconds < 5400) return `${Math.round(seconds / 60)} min`;
  return `${(seconds / 3600).toFixed(1)} h`;
}

async function getJson(path, options) {
  const response = await api.fetchApi(path, options);
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(body.error ?? `${path}: HTTP ${response.status}`);
  return body;
}

const pageUrl = (before) =>
  `/shielddiff/jobs?limit=${PAGE_SIZE}` + (before ? `&before=${encodeURIComponent(before)}` : "");

async function loadJobs() {
  try {
    const page = await getJson(pageUrl(null));
    [state.jobs, state.next, state.total] = [page.jobs ?? [], page.next ?? null, page.total ?? 0];
  } catch (error) {
    console.warn("ShieldDiff: cannot list training jobs", error);
    [state.jobs, state.next, state.total] = [[], null, 0];
  }
  if (!state.jobs.some((j) => j.id === state.selected)) {
    state.selected = (state.jobs.find((j) => j.state === "running") ?? state.jobs[0])?.id ?? null;
  }
  await loadDetail();
}

async function loadOlder() {
  try {
    const page = await getJson(pageUrl(state.next));
    const known = new Set(state.jobs.map((j) => j.id));
    state.jobs.push(...(page.jobs ?? []).filter((j) => !known.has(j.id)));
    [state.next, state.total] = [page.next ?? null, page.total ?? state.total];
  } catch (error) {
    warn(error.message);
  }
  render();
}

async function deleteJob(job) {
  const name = job.lora_name ?? job.id;
  const kept = job.lora_file ? ` The LoRA models/loras/${job.lora_file} is kept.` : "";
  if (!window.confirm(`Delete training job ${name} (${job.id}) and its folder: metrics, samples, checkpoints?${kept}`)) return;
  try {
    await getJson(`/shielddiff/jobs/${encodeURIComponent(job.id)}`, { method: "DELETE" });
  } catch (error) {
    warn(error.message);
  }
  await loadJobs();
}

async function loadDetail() {
  state.detail = null;
  if (state.selected) {
    try {
      state.detail = await getJson(`/shielddiff/jobs/${encodeURIComponent(state.selected)}`);
    } catch (error) {
      console.warn("ShieldDiff: cannot read job", state.selected, error);
    }
  }
  render();
}

// A warning toast: toast.warning(message, options) on frontend 1.5x, toast.add(...) (PrimeVue's
// call, deprecated there) on older ones, the console where there is no toast at all.
function warn(message) {
  const toast = app.extensionManager?.toast;
  if (typeof toast?.warning === "function") toast.warning("ShieldDiff", { description: message, duration: 5000 });
  else if (typeof toast?.add === "function") toast.add({ severity: "warn", summary: "ShieldDiff", detail: message, life: 5000 });
  else console.warn("ShieldDiff:", message);
}

async function act(job, action, query = "") {
  try {
    const summary = await getJson(`/shielddiff/jobs/${encodeURIComponent(job.id)}/${action}${query}`, { method: "POST" });
    upsert(summary);
    if (summary.exported) {
      state.notice = `saved loras/${summary.exported}`;
      app.refreshComboInNodes?.();
    }
  } catch (error) {
    warn(error.message);
  }
  render();
}

function upsert(summary) {
  const i = state.jobs.findIndex((j) => j.id === summary.id);
  if (i >= 0) state.jobs[i] = summary;
  else state.jobs.unshift(summary);
  if (!state.selected) state.selected = summary.id;
}

function chart(metrics, key, label) {
  const points = metrics.map((m) => [m.epoch, m[key]]).filter(([x, y]) => finite(x) && finite(y));
  if (!points.length) return null;
  const W = 260, H = 90, P = 6;
  const xs = points.map((p) => p[0]), ys = points.map((p) => p[1]);
  const [x0, x1] = [Math.min(...xs), Math.max(...xs)];
  let [y0, y1] = [Math.min(...ys), Math.max(...ys)];
  if (y1 - y0 < 1e-9) [y0, y1] = [y0 - 0.5, y1 + 0.5];
  const sx = (x) => P + ((x - x0) / Math.max(x1 - x0, 1)) * (W - 2 * P);
  const sy = (y) => H - P - ((y - y0) / (y1 - y0)) * (H - 2 * P);
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  svg.setAttribute("class", "shielddiff-chart-plot");
  const line = document.createElementNS(ns, "polyline");
  line.setAttribute("points", points.map(([x, y]) => `${sx(x).toFixed(1)},${sy(y).toFixed(1)}`).join(" "));
  svg.append(line);
  for (const [x, y] of points) {
    const dot = document.createElementNS(ns, "circle");
    dot.setAttribute("cx", sx(x).toFixed(1));
    dot.setAttribute("cy", sy(y).toFixed(1));
    dot.setAttribute("r", "2.5");
    svg.append(dot);
  }
  const last = ys[ys.length - 1];
  return el(
    "div",
    { class: "shielddiff-chart", "data-metric": key, "data-points": String(points.length) },
    el("div", { class: "shielddiff-chart-title" }, `${label}: ${last.toFixed(3)}`,
      el("span", {}, ` (${y0.toFixed(3)} … ${y1.toFixed(3)}, ${points.length} epochs)`)),
    svg
  );
}

function jobCard(job) {
  const fraction = job.total ? Math.min(1, job.epoch / job.total) : 0;
  const eta = job.state === "running" && finite(job.eta_s) ? ` · ETA ${duration(job.eta_s)}` : "";
  const buttons = [];
  if (job.state === "queued" || job.state === "running") {
    buttons.push(el("button", { class: "shielddiff-cancel", onclick: (e) => { e.stopPropagation(); act(job, "cancel"); } }, "Cancel"));
  }
  if (job.publishable) {
    buttons.push(el("button", { class: "shielddiff-publish", title: "Copy the finished LoRA into models/loras again", onclick: (e) => { e.stopPropagation(); act(job, "publish"); } }, "Publish again"));
  }
  if (job.resumable) {
    buttons.push(el("button", { class: "shielddiff-resume", onclick: (e) => { e.stopPropagation(); act(job, "resume"); } }, "Resume"));
  }
  const epochs = job.kind === "evaluate" ? [] : job.checkpoint_epochs ?? [];
  if (epochs.length && job.state !== "queued") {
    buttons.push(el("button", {
      class: "shielddiff-export",
      title: `Save the LoRA of a kept checkpoint into models/loras (kept: epochs ${epochs.join(", ")})`,
      onclick: (e) => {
        e.stopPropagation();
        const epoch = window.prompt(`Export the LoRA after which epoch? Kept: ${epochs.join(", ")}`, String(epochs.at(-1)));
        if (epoch) act(job, "export", `?epoch=${encodeURIComponent(epoch.trim())}`);
      },
    }, "Export epoch"));
  }
  if (job.state === "done" && job.kind !== "evaluate" && epochs.length) {
    buttons.push(el("button", {
      class: "shielddiff-extend",
      title: "Train this job more epochs from its last checkpoint (its LoRA stays; the longer run saves a new one)",
      onclick: (e) => {
        e.stopPropagation();
        const more = window.prompt("Train how many more epochs?", "10");
        if (more) act(job, "extend", `?epochs=${encodeURIComponent(more.trim())}`);
      },
    }, "Extend"));
  }
  if (FINISHED.includes(job.state)) {
    buttons.push(el("button", { class: "shielddiff-delete", title: "Delete this job's folder (a published LoRA stays)", onclick: (e) => { e.stopPropagation(); deleteJob(job); } }, "Delete"));
  }
  return el(
    "div",
    {
      class: `shielddiff-job${job.id === state.selected ? " selected" : ""}`,
      "data-job-id": job.id,
      "data-state": job.state,
      onclick: () => { state.selected = job.id; loadDetail(); },
    },
    el("div", { class: "shielddiff-job-title" },
      el("b", {}, job.lora_name ?? job.evaluated_lora ?? job.id), ` · ${job.method ?? ""}`,
      el("span", { class: `shielddiff-state ${job.state}` }, job.state)),
    el("div", { class: "shielddiff-progress" }, el("div", { style: `width:${(fraction * 100).toFixed(1)}%` })),
    el("div", { class: "shielddiff-job-line" }, `${progressText(job)}${eta}`),
    job.message && job.message !== progressText(job)
      ? el("div", { class: "shielddiff-job-message" }, job.message)
      : null,
    buttons.length ? el("div", { class: "shielddiff-buttons" }, buttons) : null
  );
}

function progressText(job) {
  return job.kind === "evaluate" ? `${job.epoch} of ${job.total} images` : `epoch ${job.epoch} of ${job.total}`;
}

const pct = (v) => (v === null || v === undefined ? "-" : `${(100 * v).toFixed(1)}%`);
const num = (v) => (v === null || v === undefined ? "-" : Number.isInteger(v) ? String(v) : Number(v).toPrecision(4));

// An evaluation job's before/after table (compare.json) and its grid of image pairs.
function evaluationView(detail) {
  const evaluation = detail.evaluation;
  if (!evaluation) return null;
  const table = evaluation.table;
  const [before, after] = table.names;
  const rows = table.rows.map((row) => {
    const f = row.kind === "rate" ? pct : num;
    const change = row.changes[0];
    const delta = change === null || change === undefined ? "-"
      : row.kind === "rate" ? `${change >= 0 ? "+" : ""}${(100 * change).toFixed(1)} pt` : `${change >= 0 ? "+" : ""}${num(change)}`;
    return el("tr", { "data-metric": row.metric },
      el("td", {}, row.metric), el("td", {}, f(row.values[0])), el("td", {}, f(row.values[1])), el("td", {}, delta));
  });
  return [
    el("div", { class: "shielddiff-section" }, `Before and after (${table.detector}: ${table.rule})`),
    el("table", { class: "shielddiff-evaluation" },
      el("tr", {}, el("th", {}, "metric"), el("th", {}, before), el("th", {}, after), el("th", {}, "change")),
      rows),
    evaluation.grid
      ? el("img", {
          class: "shielddiff-pairs",
          src: api.apiURL(`/shielddiff/jobs/${encodeURIComponent(detail.kind === "evaluate" ? detail.id : detail.evaluation_job)}/before_after.png?t=${detail.updated_at ?? ""}`),
          title: "Each pair: the same prompt and seed without (left) and with (right) the LoRA",
        })
      : null,
  ];
}

function detailView(detail) {
  if (!detail) return null;
  if (detail.kind === "evaluate") {
    return el(
      "div",
      { class: "shielddiff-detail", "data-job-id": detail.id },
      el("div", { class: "shielddiff-section" }, `Evaluation ${detail.id} · ${detail.evaluated_lora ?? ""} on ${detail.checkpoint ?? ""}`),
      evaluationView(detail) ?? el("div", { class: "shielddiff-empty" }, "The table appears when the evaluation is done.")
    );
  }
  const metrics = detail.metrics ?? [];
  const charts = CHARTS.map(([key, label]) => chart(metrics, key, label)).filter(Boolean);
  const samples = (detail.samples ?? []).map((s) =>
    el("img", {
      src: api.apiURL(`/shielddiff/jobs/${encodeURIComponent(detail.id)}/samples/${encodeURIComponent(s.name)}`),
      title: `epoch ${s.epoch + 1}, sample ${s.index + 1}`,
      loading: "lazy",
    })
  );
  return el(
    "div",
    { class: "shielddiff-detail", "data-job-id": detail.id },
    el("div", { class: "shielddiff-section" }, `Job ${detail.id} · ${detail.checkpoint ?? ""}`),
    charts.length ? charts : el("div", { class: "shielddiff-empty" }, "Charts appear after the first epoch."),
    samples.length
      ? [el("div", { class: "shielddiff-section" }, `Samples, epoch ${detail.samples.at(-1).epoch + 1}`),
         el("div", { class: "shielddiff-samples" }, samples)]
      : null,
    evaluationView(detail)
  );
}

function render() {
  const root = state.root;
  if (!root || !root.isConnected) return;
  root.replaceChildren(
    el("div", { class: "shielddiff-panel" },
      el("div", { class: "shielddiff-header" }, el("span", {}, "ShieldDiff training"),
        el("button", { class: "shielddiff-refresh", title: "Reload the job list", onclick: loadJobs }, "↻")),
      state.notice ? el("div", { class: "shielddiff-notice" }, state.notice) : null,
      state.jobs.length
        ? state.jobs.map(jobCard)
        : el("div", { class: "shielddiff-empty" }, "No jobs yet. Queue a Train Safety LoRA or an Evaluate LoRA node to start one."),
      state.next
        ? el("button", { class: "shielddiff-older", title: `${state.jobs.length} of ${state.total} jobs shown`, onclick: loadOlder }, "Show older")
        : null,
      detailView(state.detail))
  );
}

const EVALUATE_SETTING = "ShieldDiff.EvaluateAfterTraining";

// The node that queued a job (its result text names the job) shows the job's progress too.
function showOnNodes(summary) {
  for (const node of app.graph?.nodes ?? []) {
    if (!node.shielddiffResult?.includes(summary.id)) continue;
    const widget = node.widgets?.find((w) => w.name === "shielddiff_result");
    const eta = summary.state === "running" && finite(summary.eta_s) ? ` · ETA ${duration(summary.eta_s)}` : "";
    const text = `job ${summary.id}: ${summary.state} · ${progressText(summary)}${eta}\n${summary.message ?? ""}`;
    node.shielddiffResult = text;
    node.shielddiffJobState = summary.state;
    node.shielddiffJobStates = [...new Set([...(node.shielddiffJobStates ?? []), summary.state])];
    if (widget) widget.value = text;
    node.setDirtyCanvas?.(true, true);
  }
}

function evaluateAfterTraining() {
  try {
    const store = app.extensionManager?.setting;
    const value = store?.get ? store.get(EVALUATE_SETTING) : app.ui?.settings?.getSettingValue?.(EVALUATE_SETTING);
    return value ?? true;
  } catch {
    return true;
  }
}

let refreshTimer = null;
function onJobEvent(event) {
  const summary = event.detail;
  if (!summary?.id) return;
  const before = state.jobs.find((j) => j.id === summary.id);
  upsert(summary);
  showOnNodes(summary);
  if (summary.state === "done" && before?.state !== "done") {
    app.refreshComboInNodes?.();
    // the server queues it once, however many pages ask
    if (summary.kind !== "evaluate" && !summary.evaluation_job && evaluateAfterTraining()) act(summary, "evaluate");
  }
  if (summary.id === state.selected || (summary.source_job === state.selected && summary.state === "done")) {
    clearTimeout(refreshTimer);
    refreshTimer = setTimeout(loadDetail, 150); // several events in a row: one fetch
  } else {
    render();
  }
}

function onJobDeleted(event) {
  const id = event.detail?.id;
  if (!id) return;
  state.jobs = state.jobs.filter((j) => j.id !== id);
  if (state.selected === id) {
    state.selected = state.jobs[0]?.id ?? null;
    loadDetail();
  } else {
    render();
  }
}

const STYLE = `
.shielddiff-panel { padding: 8px; font-size: 13px; color: var(--fg-color); display: flex; flex-direction: column; gap: 8px; }
.shielddiff-header { display: flex; justify-content: space-between; align-items: center; font-weight: bold; font-size: 15px; }
.shielddiff-job { border: 1px solid var(--border-color); border-radius: 6px; padding: 6px 8px; cursor: pointer; }
.shielddiff-job.selected { border-color: var(--p-primary-color, #4a9eff); }
.shielddiff-job-title { display: flex; gap: 4px; align-items: baseline; }
.shielddiff-state { margin-left: auto; font-size: 11px; padding: 1px 6px; border-radius: 8px; background: var(--comfy-input-bg); }
.shielddiff-state.running, .shielddiff-state.publishing { background: #2d6cdf; color: #fff; } .shielddiff-state.done { background: #2e7d32; color: #fff; }
.shielddiff-state.failed { background: #c62828; color: #fff; } .shielddiff-state.cancelled { background: #8d6e63; color: #fff; }
.shielddiff-progress { height: 6px; background: var(--comfy-input-bg); border-radius: 3px; margin: 4px 0; overflow: hidden; }
.shielddiff-progress > div { height: 100%; background: var(--p-primary-color, #4a9eff); }
.shielddiff-job-line, .shielddiff-job-message, .shielddiff-empty { color: var(--descrip-text, #999); font-size: 12px; overflow-wrap: anywhere; }
.shielddiff-buttons { display: flex; gap: 6px; margin-top: 4px; }
.shielddiff-buttons button, .shielddiff-refresh, .shielddiff-older { cursor: pointer; background: var(--comfy-input-bg); color: var(--fg-color); border: 1px solid var(--border-color); border-radius: 4px; padding: 2px 10px; }
.shielddiff-section { font-weight: bold; margin-top: 4px; }
.shielddiff-chart-title { font-size: 12px; } .shielddiff-chart-title span { color: var(--descrip-text, #999); }
.shielddiff-chart-plot { width: 100%; height: 90px; background: var(--comfy-input-bg); border-radius: 4px; }
.shielddiff-chart-plot polyline { fill: none; stroke: var(--p-primary-color, #4a9eff); stroke-width: 2; }
.shielddiff-chart-plot circle { fill: var(--p-primary-color, #4a9eff); }
.shielddiff-samples { display: grid; grid-template-columns: repeat(auto-fill, minmax(72px, 1fr)); gap: 4px; }
.shielddiff-samples img { width: 100%; aspect-ratio: 1 / 1; object-fit: contain; image-rendering: pixelated; border-radius: 4px; }
.shielddiff-evaluation { width: 100%; table-layout: fixed; border-collapse: collapse; font-size: 11px; margin-bottom: 6px; }
.shielddiff-evaluation td:first-child, .shielddiff-evaluation th:first-child { width: 46%; overflow-wrap: anywhere; }
.shielddiff-evaluation td, .shielddiff-evaluation th { border-bottom: 1px solid var(--border-color, #444); padding: 2px 4px; text-align: right; }
.shielddiff-evaluation td:first-child, .shielddiff-evaluation th:first-child { text-align: left; }
.shielddiff-pairs { width: 100%; image-rendering: pixelated; border-radius: 4px; }
`;

app.registerExtension({
  name: "ShieldDiff.Training",
  settings: [
    {
      id: EVALUATE_SETTING,
      category: ["ShieldDiff", "Training", "Evaluate after training"],
      name: "Evaluate each finished training job (before/after)",
      type: "boolean",
      defaultValue: true,
      tooltip:
        "When a training job finishes while this page is open, queue the before/after evaluation of its LoRA on " +
        "its own prompts with seeds it never trained with; the job's detail then shows the table and the pairs.",
    },
  ],
  async setup() {
    document.head.append(el("style", { id: "shielddiff-jobs-style" }, STYLE));
    api.addEventListener("shielddiff.state", onJobEvent);
    api.addEventListener("shielddiff.progress", onJobEvent);
    api.addEventListener("shielddiff.deleted", onJobDeleted);
    app.extensionManager?.registerSidebarTab?.({
      id: "shielddiff-jobs",
      icon: "pi pi-shield",
      title: "ShieldDiff",
      tooltip: "ShieldDiff training jobs",
      type: "custom",
      render: (container) => {
        state.root = container;
        render();
        loadJobs();
      },
      // called when the tab closes or is unregistered: forget its container and pending refresh
      // (the job list stays current from the websocket events and is drawn again on the next open)
      destroy: () => {
        clearTimeout(refreshTimer);
        refreshTimer = null;
        state.root?.replaceChildren();
        state.root = null;
      },
    });
  },
});
