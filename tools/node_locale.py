"""The pack's English locale (locales/en/), written from the nodes' own definitions.

    python tools/node_locale.py --object-info http://127.0.0.1:8188   # a running ComfyUI with the pack
    python tools/node_locale.py --object-info object_info.json        # or a saved /object_info answer

ComfyUI serves a pack's `locales/<lang>/main.json` and `nodeDefs.json` to the frontend (/i18n).
English is the base translators start from, so it is the nodes' own text, copied: display names,
descriptions, input names and tooltips, output names and tooltips (outputs by index, as the
frontend looks them up), and the segments of the nodes' categories. Run this after changing a
node's schema; tests/e2e/test_node_locale.py fails until the files match the running nodes again.
"""

from __future__ import annotations

import argparse
import json
import logging
import urllib.request
from pathlib import Path

log = logging.getLogger("shielddiff.node_locale")

REPO = Path(__file__).resolve().parents[1]
LOCALE = REPO / "locales" / "en"
PREFIX = "ShieldDiff"  # every node id of the pack starts with it


def _entry(name: str, tooltip: str | None) -> dict:
    return {"name": name, **({"tooltip": tooltip} if tooltip else {})}


def node_defs(object_info: dict) -> dict:
    """nodeDefs.json: for each of the pack's nodes, the text the frontend shows, as the node defines it."""
    defs = {}
    for node_id in sorted(k for k in object_info if k.startswith(PREFIX)):
        info = object_info[node_id]
        inputs = {}
        for section in ("required", "optional"):  # hidden inputs have no widget or socket to name
            for name, spec in info["input"].get(section, {}).items():
                options = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
                inputs[name] = _entry(name, options.get("tooltip"))
        tooltips = info.get("output_tooltips") or [None] * len(info["output_name"])
        outputs = {str(i): _entry(n, t) for i, (n, t) in enumerate(zip(info["output_name"], tooltips, strict=True))}
        defs[node_id] = {
            "display_name": info["display_name"],
            "description": info["description"],
            "inputs": inputs,
            "outputs": outputs,
        }
    return defs


def main_strings(object_info: dict) -> dict:
    """main.json: the category segments of the pack's nodes (the frontend translates each segment)."""
    segments = {s for k, v in object_info.items() if k.startswith(PREFIX) for s in v["category"].split("/")}
    return {"nodeCategories": {s: s for s in sorted(segments)}}


def write_locale(object_info: dict, folder: Path = LOCALE) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, content in (("nodeDefs.json", node_defs(object_info)), ("main.json", main_strings(object_info))):
        (folder / name).write_text(json.dumps(content, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        log.info("wrote %s", folder / name)


def read_object_info(source: str) -> dict:
    if source.startswith(("http://", "https://")):
        with urllib.request.urlopen(source.rstrip("/") + "/object_info", timeout=60) as answer:
            return json.load(answer)
    return json.loads(Path(source).read_text(encoding="utf-8"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--object-info", required=True, help="a ComfyUI URL, or a file with its /object_info answer")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    info = read_object_info(args.object_info)
    if not any(k.startswith(PREFIX) for k in info):
        log.error("no %s nodes in %s: is the pack installed in that ComfyUI?", PREFIX, args.object_info)
        return 1
    write_locale(info)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
