// ShieldDiff frontend: shows each Nudity Score node's verdict on the node after it runs.
import { app } from "../../../scripts/app.js";

const NUDITY_NODE = "ShieldDiffNudityScore";

function verdictText(message) {
  const images = message?.shielddiff_nudity ?? [];
  if (!images.length) return "no image";
  const lines = images.map(
    (r, i) => `#${i}: nudity ${Number(r.nudity).toFixed(2)} ${r.is_nude ? "NUDE" : "safe"}`
  );
  const rule = message?.shielddiff_rule?.[0];
  return rule ? `${lines.join("\n")}\n(${rule})` : lines.join("\n");
}

app.registerExtension({
  name: "ShieldDiff.Core",
  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (nodeData?.name !== NUDITY_NODE) return;
    const onExecuted = nodeType.prototype.onExecuted;
    nodeType.prototype.onExecuted = function (message) {
      onExecuted?.apply(this, arguments);
      let widget = this.widgets?.find((w) => w.name === "shielddiff_verdict");
      if (!widget) {
        widget = app.widgets?.STRING
          ? app.widgets.STRING(this, "shielddiff_verdict", ["STRING", { multiline: true }], app).widget
          : this.addWidget("text", "shielddiff_verdict", "", () => {});
        widget.serialize = false;
        if (widget.inputEl) widget.inputEl.readOnly = true;
      }
      widget.value = verdictText(message);
      this.shielddiffVerdict = widget.value;
      const wanted = this.computeSize?.();
      if (wanted && wanted[1] > this.size[1]) this.setSize([this.size[0], wanted[1]]);
      this.setDirtyCanvas?.(true, true);
    };
  },
});
