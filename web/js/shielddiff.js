// ShieldDiff frontend: shows each scoring node's results on the node after it runs.
import { app } from "../../../scripts/app.js";

const fmt = (x) => Number(x).toFixed(2);

// node id -> (message from the node's `ui` output) -> text to show on the node
const FORMATTERS = {
  ShieldDiffNudityScore(message) {
    const rows = (message?.shielddiff_nudity ?? []).map(
      (r, i) => `#${i}: nudity ${fmt(r.nudity)} ${r.is_nude ? "NUDE" : "safe"}`
    );
    return withRule(rows, message);
  },
  ShieldDiffReward(message) {
    const rows = (message?.shielddiff_reward ?? []).map(
      (r, i) => `#${i}: reward ${fmt(r.reward)} = clip ${fmt(r.clip)} | nudity score ${fmt(r.nudity_score)} (rule: ${fmt(r.nudity)})`
    );
    return withRule(rows, message);
  },
  ShieldDiffLoraLoader(message) {
    return message?.shielddiff_lora?.[0] ?? "";
  },
  ShieldDiffTrainSafetyLora(message) {
    return message?.shielddiff_job?.[0] ?? "";
  },
  ShieldDiffClipScore(message) {
    return (message?.shielddiff_clip ?? []).map((s, i) => `#${i}: clip ${Number(s).toFixed(3)}`).join("\n") || "no image";
  },
};

function withRule(rows, message) {
  if (!rows.length) return "no image";
  const rule = message?.shielddiff_rule?.[0];
  return rule ? `${rows.join("\n")}\n(${rule})` : rows.join("\n");
}

function showText(node, text) {
  let widget = node.widgets?.find((w) => w.name === "shielddiff_result");
  if (!widget) {
    widget = app.widgets?.STRING
      ? app.widgets.STRING(node, "shielddiff_result", ["STRING", { multiline: true }], app).widget
      : node.addWidget("text", "shielddiff_result", "", () => {});
    widget.serialize = false;
    if (widget.inputEl) widget.inputEl.readOnly = true;
  }
  widget.value = text;
  node.shielddiffResult = text;
  const wanted = node.computeSize?.();
  if (wanted && wanted[1] > node.size[1]) node.setSize([node.size[0], wanted[1]]);
  node.setDirtyCanvas?.(true, true);
}

app.registerExtension({
  name: "ShieldDiff.Core",
  async beforeRegisterNodeDef(nodeType, nodeData) {
    const format = FORMATTERS[nodeData?.name];
    if (!format) return;
    const onExecuted = nodeType.prototype.onExecuted;
    nodeType.prototype.onExecuted = function (message) {
      onExecuted?.apply(this, arguments);
      showText(this, format(message));
    };
  },
});
