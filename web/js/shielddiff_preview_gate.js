// ShieldDiff preview gate (a setting, off by default): blurs node image previews and sampler
// previews of a prompt until a ShieldDiff verdict for that prompt says its images are safe.
//
// A verdict is an "executed" message, for the same prompt, from a node whose output reports
// `shielddiff_nudity` (Nudity Score, Nudity Filter). Safe (no image is nude): the prompt's previews
// are shown as they are. Nude: they stay blurred. No verdict (the prompt has no scoring node): they
// stay blurred.
//
// The gate sits where ComfyUI's frontend turns websocket messages into events (the api object's
// dispatchCustomEvent): sampler previews (b_preview, b_preview_with_metadata) get a blurred blob, and
// "executed" messages get their images replaced by blurred copies uploaded to ComfyUI's temp folder,
// so every part of the frontend that listens to these events shows the blurred file. While a message
// is being blurred, the messages after it wait, so their order is kept. When anything fails, the
// preview stays hidden (never clear).
import { app } from "../../../scripts/app.js";
import { api } from "../../../scripts/api.js";

export const SETTING = "ShieldDiff.PreviewGate";
export const BLURRED_PREFIX = "shielddiff-blurred-";
const SMALL_SIDE = 24; // the blur keeps about this many pixels across the longer side
const KEEP_PROMPTS = 32; // prompts whose state (verdict, held messages) is remembered
const FETCH_TIMEOUT_MS = 60_000;
const PREVIEWS = new Set(["b_preview", "b_preview_with_metadata"]);

const warn = (what, err) => console.warn(`ShieldDiff preview gate: ${what}`, err ?? "");

function gateOn() {
  try {
    const store = app.extensionManager?.setting;
    const value = store?.get ? store.get(SETTING) : app.ui?.settings?.getSettingValue?.(SETTING);
    return value === true;
  } catch (err) {
    warn("could not read the setting; previews are not gated", err);
    return false;
  }
}

// ---- pixels ------------------------------------------------------------------------------

function canvas(width, height) {
  if (typeof OffscreenCanvas !== "undefined") return new OffscreenCanvas(width, height);
  const c = document.createElement("canvas");
  c.width = width;
  c.height = height;
  return c;
}

function toPng(c) {
  if (c.convertToBlob) return c.convertToBlob({ type: "image/png" });
  return new Promise((resolve, reject) =>
    c.toBlob((b) => (b ? resolve(b) : reject(new Error("the canvas gave no image"))), "image/png")
  );
}

/** A strongly blurred PNG of an image blob: shrunk to a few pixels, smoothed back up, blurred again. */
export async function blurBlob(blob) {
  const bitmap = await createImageBitmap(blob);
  try {
    const { width, height } = bitmap;
    const scale = Math.min(1, SMALL_SIDE / Math.max(width, height));
    const small = canvas(Math.max(1, Math.round(width * scale)), Math.max(1, Math.round(height * scale)));
    const sctx = small.getContext("2d");
    sctx.imageSmoothingEnabled = true;
    sctx.imageSmoothingQuality = "high";
    sctx.drawImage(bitmap, 0, 0, small.width, small.height);
    const out = canvas(width, height);
    const ctx = out.getContext("2d");
    ctx.imageSmoothingEnabled = true;
    ctx.imageSmoothingQuality = "high";
    ctx.drawImage(small, 0, 0, width, height); // fills the edges, which the blur below fades
    if ("filter" in ctx) {
      ctx.filter = `blur(${Math.max(2, Math.round(Math.max(width, height) / SMALL_SIDE))}px)`;
      ctx.drawImage(small, 0, 0, width, height);
    }
    return await toPng(out);
  } finally {
    bitmap.close?.();
  }
}

// ---- per-prompt state --------------------------------------------------------------------

const prompts = new Map(); // prompt id -> { verdict: null | "safe" | "nude", held: [], previews: Map }
let running = null; // the prompt being executed (from execution_start)

function stateOf(promptId) {
  if (promptId == null) return null;
  let state = prompts.get(promptId);
  if (!state) {
    state = { verdict: null, held: [], previews: new Map() };
    prompts.set(promptId, state);
    while (prompts.size > KEEP_PROMPTS) prompts.delete(prompts.keys().next().value);
  }
  return state;
}

/** "nude" / "safe" when this output is a ShieldDiff verdict, otherwise null. */
function verdictOf(output) {
  const rows = output?.shielddiff_nudity;
  if (!Array.isArray(rows)) return null;
  return rows.some((r) => r?.is_nude) ? "nude" : "safe";
}

// ---- ordered dispatch --------------------------------------------------------------------

const dispatch = api.dispatchCustomEvent; // the frontend's own, called on the api object
const queue = []; // { type, detail (value or promise), preview, dropped }
let pumping = false;

function send(type, detail) {
  return dispatch.call(api, type, detail);
}

/** Dispatch now when nothing waits, otherwise after what waits (a promise detail is awaited). */
function enqueue(type, detail, preview = false) {
  if (!queue.length && !(detail instanceof Promise)) return send(type, detail);
  if (preview) for (const item of queue) if (item.preview && item.type === type) item.dropped = true; // stale
  queue.push({ type, detail, preview, dropped: false });
  pump();
  return true;
}

async function pump() {
  if (pumping) return;
  pumping = true;
  try {
    while (queue.length) {
      const item = queue[0];
      let detail;
      try {
        detail = await item.detail;
      } catch (err) {
        warn(`dropped a ${item.type} message that could not be blurred`, err);
        item.dropped = true;
      }
      queue.shift();
      if (!item.dropped) send(item.type, detail);
    }
  } finally {
    pumping = false;
  }
}

// ---- sampler previews --------------------------------------------------------------------

const blurredBlobs = new WeakMap(); // b_preview_with_metadata and b_preview carry the same blob: blur it once

function blurredPreview(type, detail) {
  const blob = type === "b_preview" ? detail : detail?.blob;
  if (!(blob instanceof Blob)) return Promise.reject(new Error(`a ${type} message without an image`));
  let blurred = blurredBlobs.get(blob);
  if (!blurred) {
    blurred = blurBlob(blob);
    blurredBlobs.set(blob, blurred);
  }
  return blurred.then((b) => (type === "b_preview" ? b : { ...detail, blob: b }));
}

function onPreview(type, detail) {
  const state = stateOf(running);
  if (!gateOn() || state?.verdict === "safe") return enqueue(type, detail, true);
  const node = detail?.displayNodeId ?? detail?.nodeId;
  if (state && type === "b_preview_with_metadata" && node != null) state.previews.set(node, detail);
  return enqueue(type, blurredPreview(type, detail), true);
}

// ---- image previews ----------------------------------------------------------------------

const hasImages = (output) => Array.isArray(output?.images) && output.images.length > 0;

async function fetchOk(route, options = {}) {
  const signal = typeof AbortSignal.timeout === "function" ? AbortSignal.timeout(FETCH_TIMEOUT_MS) : undefined;
  const response = await api.fetchApi(route, { ...options, signal });
  if (!response.ok) throw new Error(`${route.split("?")[0]} answered HTTP ${response.status}`);
  return response;
}

/** Blurs one image of an output and uploads the blurred PNG to the temp folder; returns its entry. */
async function blurredImage(image) {
  const type = image?.type ?? "output";
  const subfolder = image?.subfolder ?? "";
  const query = new URLSearchParams({ filename: image.filename, subfolder, type });
  const original = await (await fetchOk(`/view?${query}`)).blob();
  const blurred = await blurBlob(original);
  const stem = String(image.filename).replace(/\.[^./]*$/, "");
  const form = new FormData();
  form.append("image", blurred, `${BLURRED_PREFIX}${type}-${stem}.png`);
  form.append("type", "temp");
  form.append("subfolder", subfolder);
  form.append("overwrite", "true");
  const saved = await (await fetchOk("/upload/image", { method: "POST", body: form })).json();
  return { ...image, filename: saved.name, subfolder: saved.subfolder ?? "", type: saved.type ?? "temp" };
}

/** The executed message with its images replaced by blurred copies (none when blurring fails). */
async function blurredExecuted(detail) {
  let images = [];
  try {
    images = await Promise.all(detail.output.images.map(blurredImage));
  } catch (err) {
    warn(`could not blur the images of node ${detail.display_node ?? detail.node}; they stay hidden`, err);
  }
  return { ...detail, output: { ...detail.output, images } };
}

function settle(state, verdict) {
  if (verdict === "nude") {
    const wasSafe = state.verdict === "safe";
    state.verdict = "nude";
    if (wasSafe) for (const held of state.held) enqueue("executed", (held.blurred ??= blurredExecuted(held.original)));
  } else if (state.verdict === null) {
    state.verdict = "safe";
    for (const held of state.held) enqueue("executed", held.original);
    for (const preview of state.previews.values()) enqueue("b_preview_with_metadata", preview);
    state.previews.clear();
  }
}

function onExecuted(detail) {
  const output = detail?.output;
  const state = stateOf(detail?.prompt_id);
  const verdict = verdictOf(output);
  if (verdict && state) {
    const sent = hasImages(output) && verdict === "nude" ? enqueue("executed", blurredExecuted(detail)) : enqueue("executed", detail);
    settle(state, verdict);
    return sent;
  }
  if (!hasImages(output) || !gateOn()) return enqueue("executed", detail);
  const held = { original: detail, blurred: null };
  state?.held.push(held);
  if (state?.verdict === "safe") return enqueue("executed", detail);
  held.blurred = blurredExecuted(detail);
  return enqueue("executed", held.blurred);
}

// ---- the hook ----------------------------------------------------------------------------

function route(type, detail) {
  if (type === "execution_start") running = detail?.prompt_id ?? null;
  if (PREVIEWS.has(type)) return onPreview(type, detail);
  if (type === "executed") return onExecuted(detail);
  return enqueue(type, detail);
}

if (typeof dispatch === "function") {
  api.dispatchCustomEvent = function (type, detail) {
    try {
      return route(type, detail);
    } catch (err) {
      if (PREVIEWS.has(type) || (type === "executed" && gateOn())) {
        warn(`dropped a ${type} message`, err); // never show a gated preview clear
        return false;
      }
      warn(`passed a ${type} message on unchanged`, err);
      return send(type, detail);
    }
  };
} else {
  warn("this frontend has no api.dispatchCustomEvent; previews are not gated");
}

app.registerExtension({
  name: "ShieldDiff.PreviewGate",
  settings: [
    {
      id: SETTING,
      category: ["ShieldDiff", "Previews", "Gate"],
      name: "Blur previews until a ShieldDiff verdict says they are safe",
      type: "boolean",
      defaultValue: false,
      tooltip:
        "Blurs sampler previews and node image previews of a prompt until a Nudity Score or Nudity Filter node " +
        "in that prompt reports its images safe. A nude verdict keeps them blurred, and so does a prompt with " +
        "no scoring node. Covers previews the frontend receives over the websocket, not previews of other " +
        "extensions, the queue and assets sidebars, or files on disk.",
    },
  ],
});
