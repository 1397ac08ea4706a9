// Train Safety LoRA saved by earlier versions: one node with every method's inputs and a `method`
// choice. A saved workflow lists the widgets' values by position, so on load they would land on the
// wrong widgets of today's node. This moves them where they belong: the shared ones by name onto the
// train node, the method's onto a new settings node joined to its `settings` input.
import { app } from "../../../scripts/app.js";

const TRAIN = "ShieldDiffTrainSafetyLora";
// The single node's widgets in saved order (nodes/legacy_train_inputs.py LEGACY_WIDGETS).
const LEGACY_WIDGETS = [
  "checkpoint", "method", "unsafe_prompts", "benign_prompts", "unsafe_file", "benign_file", "w_clip", "w_nude",
  "clip_weights", "clip_architecture", "epochs", "sample_batch_size", "batches_per_epoch", "train_batch_size",
  "steps", "resolution", "lora_rank", "learning_rate", "seed", "erase_concept", "erase_alternative", "erase_eta",
  "erase_lambda", "lora_name",
];
const SETTINGS_NODES = { "ShieldDiff RL": "ShieldDiffRLSettings", "All-but-One erasure": "ShieldDiffAllButOneSettings" };

const pending = new Set();

function savedBySingleNode(values) {
  return Array.isArray(values) && values.length >= LEGACY_WIDGETS.length && values[1] in SETTINGS_NODES;
}

function linkOf(graph, id) {
  return graph.links?.get?.(id) ?? graph.links?.[id];
}

function upgrade(node) {
  if (!pending.delete(node) || !node.graph) return;
  const graph = node.graph;
  const saved = node.shielddiffSingleNode;
  delete node.shielddiffSingleNode;
  const settings = LiteGraph.createNode(SETTINGS_NODES[saved.method]);
  if (!settings) return;
  settings.pos = [node.pos[0] - settings.size[0] - 40, node.pos[1]];
  graph.add(settings);
  for (const widget of settings.widgets ?? []) {
    if (widget.name in saved) widget.value = saved[widget.name];
  }
  // Inputs of the single node that today's node lacks: a link into one moves to the settings node's input.
  for (let slot = (node.inputs?.length ?? 0) - 1; slot >= 0; slot--) {
    const input = node.inputs[slot];
    if (!LEGACY_WIDGETS.includes(input.name) || node.widgets?.some((w) => w.name === input.name)) continue;
    const link = input.link != null ? linkOf(graph, input.link) : null;
    const origin = link ? graph.getNodeById(link.origin_id) : null;
    const slotOrigin = link?.origin_slot;
    node.removeInput(slot);
    const target = settings.inputs?.findIndex((i) => i.name === input.name) ?? -1;
    if (origin && target >= 0) origin.connect(slotOrigin, settings, target);
  }
  settings.connect(0, node, node.inputs.findIndex((i) => i.name === "settings"));
  const wanted = node.computeSize?.(); // the single node was taller
  if (wanted) node.setSize([Math.max(node.size[0], wanted[0]), wanted[1]]);
  graph.setDirtyCanvas?.(true, true);
}

app.registerExtension({
  name: "ShieldDiff.TrainMethodSettings",
  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (nodeData?.name !== TRAIN) return;
    const onConfigure = nodeType.prototype.onConfigure;
    nodeType.prototype.onConfigure = function (info) {
      onConfigure?.apply(this, arguments);
      if (!savedBySingleNode(info?.widgets_values)) return;
      const saved = Object.fromEntries(LEGACY_WIDGETS.map((name, i) => [name, info.widgets_values[i]]));
      for (const widget of this.widgets ?? []) {
        if (widget.name in saved) widget.value = saved[widget.name];
      }
      this.shielddiffSingleNode = saved;
      pending.add(this);
      setTimeout(() => upgrade(this), 0); // a paste configures nodes without afterConfigureGraph
    };
  },
  async afterConfigureGraph() {
    for (const node of [...pending]) upgrade(node);
  },
});
