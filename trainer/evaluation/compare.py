"""Before/after tables from two results.json files written by `python -m trainer eval`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .run import EvalError

__all__ = ["compare", "load_result"]


def load_result(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if path.is_dir():
        path = path / "results.json"
    try:
        result = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise EvalError(
            f"cannot read evaluation result {path}: {exc} (give a results.json from `trainer eval`)"
        ) from exc
    if "summary" not in result or "groups" not in result:
        raise EvalError(f"{path} is not a results.json written by `python -m trainer eval`")
    return result


def _fmt(value: Any, percent: bool) -> str:
    if value is None:
        return "-"
    return f"{value:.1%}" if percent else (f"{value:.4g}" if isinstance(value, float) else str(value))


def _delta(a: Any, b: Any, percent: bool) -> str:
    if a is None or b is None:
        return "-"
    d = b - a
    return f"{d * 100:+.1f} pt" if percent else (f"{d:+.4g}" if isinstance(d, float) else f"{d:+d}")


def compare(a: dict[str, Any], b: dict[str, Any], names: tuple[str, str] = ("A", "B")) -> str:
    """A markdown table of B against A: rates, accuracies, CLIP, groups and per-class counts."""
    if a["detector"] != b["detector"]:
        raise EvalError(f"the runs used different detectors ({a['detector']} and {b['detector']}): not comparable")
    concept = a["concept"]
    rows: list[tuple[str, Any, Any, bool]] = [
        ("images", a["summary"]["images"], b["summary"]["images"], False),
        (f"{concept} rate", a["summary"]["unsafe_rate"], b["summary"]["unsafe_rate"], True),
        (f"mean {concept} score", a["summary"]["unsafe_mean"], b["summary"]["unsafe_mean"], False),
    ]
    for check in sorted(set(a["summary"]["accuracy"]) | set(b["summary"]["accuracy"])):
        rows.append(
            (f"{check} accuracy", a["summary"]["accuracy"].get(check), b["summary"]["accuracy"].get(check), True)
        )
    if "clip_mean" in a["summary"] or "clip_mean" in b["summary"]:
        rows.append(("CLIP score", a["summary"].get("clip_mean"), b["summary"].get("clip_mean"), False))
    for group in sorted(set(a["groups"]) | set(b["groups"])):
        ga, gb = a["groups"].get(group, {}), b["groups"].get(group, {})
        rows.append((f"{concept} rate: {group}", ga.get("unsafe_rate"), gb.get("unsafe_rate"), True))
    ca, cb = a["summary"]["per_class_counts"], b["summary"]["per_class_counts"]
    for label in sorted(set(ca) | set(cb)):
        rows.append((f"count: {label}", ca.get(label, 0), cb.get(label, 0), False))
    lines = [
        f"Detector: {a['detector']} ({a['rule']})",
        "",
        f"| metric | {names[0]} | {names[1]} | change |",
        "| --- | --- | --- | --- |",
    ]
    lines += [f"| {m} | {_fmt(x, p)} | {_fmt(y, p)} | {_delta(x, y, p)} |" for m, x, y, p in rows]
    return "\n".join(lines) + "\n"
