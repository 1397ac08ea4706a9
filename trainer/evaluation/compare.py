"""Side-by-side tables of results.json files written by `python -m trainer eval`: the first result
(the base model) against each of the others (LoRAs), with the change from the first, as a dict
(written as compare.json) and as markdown."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .errors import EvalError

__all__ = ["compare", "comparison", "comparison_markdown", "load_result"]


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


def _rows(results: list[dict[str, Any]]) -> list[tuple[str, str, list[Any]]]:
    """(metric, kind, one value per result); kind is "rate" (shown in %) or "number"."""
    concept = results[0]["concept"]
    summaries = [r["summary"] for r in results]

    def each(key: str, source=summaries) -> list[Any]:
        return [s.get(key) for s in source]

    def union(key: str) -> list[str]:
        return sorted(set().union(*(s.get(key, {}) for s in summaries)))

    rows = [
        ("images", "number", each("images")),
        ("prompts", "number", each("prompts")),
        (f"{concept} rate", "rate", each("unsafe_rate")),
        ("attack success rate (prompts with an unsafe image)", "rate", each("attack_success_rate")),
        (f"mean {concept} score", "number", each("unsafe_mean")),
    ]
    if any("judge_unsafe_rate" in s for s in summaries):
        rows += [
            ("judge rate", "rate", each("judge_unsafe_rate")),
            ("judge attack success rate", "rate", each("judge_attack_success_rate")),
            ("mean judge score", "number", each("judge_mean")),
        ]
    for check in union("accuracy"):
        rows.append((f"{check} accuracy", "rate", [s["accuracy"].get(check) for s in summaries]))
    if any("clip_mean" in s for s in summaries):
        rows.append(("CLIP score", "number", each("clip_mean")))
    for group in sorted(set().union(*(r["groups"] for r in results))):
        groups = [r["groups"].get(group, {}) for r in results]
        rows.append((f"{concept} rate: {group}", "rate", each("unsafe_rate", groups)))
        rows.append((f"attack success rate: {group}", "rate", each("attack_success_rate", groups)))
    field = union("field_counts")
    ordered = list(summaries[0].get("field_counts", {})) + [
        c for c in field if c not in summaries[0].get("field_counts", {})
    ]
    for label in ordered:
        rows.append((f"count: {label}", "number", [s.get("field_counts", {}).get(label, 0) for s in summaries]))
    if field:
        rows.append((f"count: total ({len(ordered)} classes)", "number", each("field_total")))
    for label in union("per_class_counts"):
        if label not in field:
            rows.append((f"count: {label}", "number", [s["per_class_counts"].get(label, 0) for s in summaries]))
    return rows


def comparison(results: list[dict[str, Any]], names: list[str]) -> dict[str, Any]:
    """Every metric of each result, with its change from the first result (None where either is missing)."""
    if len(results) < 2 or len(names) != len(results):
        raise EvalError(f"compare needs two or more results, one name each (got {len(results)} and {len(names)})")
    detectors = {r["detector"] for r in results}
    if len(detectors) > 1:
        raise EvalError(f"the runs used different detectors ({', '.join(sorted(detectors))}): not comparable")
    rows = []
    for metric, kind, values in _rows(results):
        first = values[0]
        deltas = [None if first is None or v is None else v - first for v in values]
        rows.append({"metric": metric, "kind": kind, "values": values, "changes": deltas[1:]})
    return {
        "names": list(names),
        "detector": results[0]["detector"],
        "rule": results[0]["rule"],
        "judges": [r.get("judge") for r in results],
        "rows": rows,
    }


def _fmt(value: Any, kind: str) -> str:
    if value is None:
        return "-"
    return f"{value:.1%}" if kind == "rate" else (f"{value:.4g}" if isinstance(value, float) else str(value))


def _delta(d: Any, kind: str) -> str:
    if d is None:
        return "-"
    return f"{d * 100:+.1f} pt" if kind == "rate" else (f"{d:+.4g}" if isinstance(d, float) else f"{d:+d}")


def comparison_markdown(table: dict[str, Any]) -> str:
    names = table["names"]
    lines = [f"Detector: {table['detector']} ({table['rule']})"]
    if any(table["judges"]):
        judges = set(table["judges"])
        lines.append(f"Judge: {table['judges'][0]}" + ("" if len(judges) == 1 else " (the runs' judges differ)"))
    lines.append("")
    if len(names) == 2:
        head = ["metric", names[0], names[1], "change"]
    else:
        head = ["metric", names[0]] + [x for n in names[1:] for x in (n, f"change {n}")]
    lines += ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for row in table["rows"]:
        kind = row["kind"]
        cells = [row["metric"], _fmt(row["values"][0], kind)]
        for value, change in zip(row["values"][1:], row["changes"], strict=True):
            cells += [_fmt(value, kind), _delta(change, kind)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def compare(a: dict[str, Any], b: dict[str, Any], names: tuple[str, str] = ("A", "B")) -> str:
    """A markdown table of B against A (see comparison for more than two)."""
    return comparison_markdown(comparison([a, b], list(names)))
