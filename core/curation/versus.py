"""Models side by side on one labelled set (v1 against v2): tables, paired failures, pictures.

A model's result is what the Error analysis page caches (error-analysis/<model>__<set>.json:
`eval_acne`'s result for lesion sets, {"model", "rows"} for image-label sets) or an eval JSON
from `glowai eval acne|segmentation --json`. `summary` brings both kinds to the eval-result shape;
`versus_table` lays them out through `core.model.compare.flatten`, one row per (section, group,
metric) and one column per model; `paired_photos` / `paired_labels` pair the per-photo outcomes
for a failure gallery and `lesion_picture` draws a photo with the expert circles and each model's
predicted lesion centres in its own marker.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from core.colour import ITA_CATEGORIES
from core.curation.errors import lesion_table, per_class_scores
from core.labels import CONDITIONS, LABELS
from core.model.compare import flatten

SECTIONS = ("overall", "per grade", "per class", "per skin tone")
TONE_ORDER = [name for _, name in ITA_CATEGORIES]
EXPERT = (40, 220, 60)  # green circles: the expert's lesions
MARKERS = (((255, 40, 40), cv2.MARKER_TILTED_CROSS, "red ×"),  # the first model
           ((40, 150, 255), cv2.MARKER_CROSS, "blue +"),  # the second
           ((255, 210, 0), cv2.MARKER_DIAMOND, "yellow ◇"))
HIGHER_IS_BETTER = {"recall", "precision", "spearman", "miou", "iou"}
LOWER_IS_BETTER = {"fp_per_image", "count_mae", "wrong_per_photo"}


def safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name)


def run_name(model: str, folder_name: str) -> str:
    """The cache and failure-tag name of one model's analysis of one labelled set."""
    return safe_name(f"{model}__{folder_name}")


def cached_runs(root: Path, read: Callable[[Path], dict] = lambda p: json.loads(p.read_text())) -> dict[str, dict[str, Path]]:
    """Labelled set (cache name) -> model -> cached error-analysis JSON, models in `model_order`."""
    found: dict[str, dict[str, Path]] = {}
    for path in sorted((Path(root) / "error-analysis").glob("*__*.json")):
        try:
            model = read(path).get("model")
        except (OSError, ValueError, AttributeError):
            continue
        found.setdefault(path.stem.rpartition("__")[2], {})[str(model or path.stem.rpartition("__")[0])] = path
    return {name: {m: models[m] for m in model_order(models)} for name, models in found.items()}


def model_order(names) -> list[str]:
    """Registry order first (v1 before the models added after it), then others, baselines last."""
    from weights import specs

    registry = list(specs())
    return sorted(names, key=lambda n: (n.startswith("baseline:"), registry.index(n) if n in registry else len(registry), n))


def summary(result: dict) -> dict:
    """An eval result as it is; an image-label result ({"model", "rows"}) as one: overall and per
    skin tone recall, precision, false calls per photo (over every condition), per class recall and
    precision."""
    if "rows" not in result:
        return result
    table = pd.DataFrame(result["rows"])
    conditions = [c.name for c in CONDITIONS if c.name in table.columns and f"{c.name}_pred" in table.columns]

    def scores(part: pd.DataFrame) -> dict:
        truth = np.concatenate([part[c].astype(bool).to_numpy() for c in conditions]) if conditions else np.array([])
        pred = np.concatenate([part[f"{c}_pred"].astype(bool).to_numpy() for c in conditions]) if conditions else np.array([])
        tp, fp, fn = int((truth & pred).sum()), int((~truth & pred).sum()), int((truth & ~pred).sum())
        return {"photos": len(part), "recall": round(tp / (tp + fn), 4) if tp + fn else None,
                "precision": round(tp / (tp + fp), 4) if tp + fp else None,
                "fp_per_image": round(fp / max(1, len(part)), 3),
                "wrong_per_photo": round((fp + fn) / max(1, len(part)), 3)}

    per_class = {}
    for row in per_class_scores(table).to_dict("records"):
        per_class.update({f"{row['condition']} recall": row["recall"], f"{row['condition']} precision": row["precision"]})
    tones = {tone: scores(part) for tone, part in table.groupby("tone")} if "tone" in table else {}
    return {"model": result.get("model"), **scores(table), "per_class": per_class, "per_tone": tones}


def sectioned(result: dict) -> list[tuple[str, str, str, object]]:
    """(section, group, metric, value) for every figure of a result, via `flatten`."""
    result = summary(result)
    parts = {part: result.get(part) or {} for part in ("per_grade", "per_tone", "per_class")}
    rows = [(section, group, "photos", scores["photos"]) for part, section in (("per_grade", "per grade"),
            ("per_tone", "per skin tone")) for group, scores in parts[part].items()
            if isinstance(scores, dict) and "photos" in scores]
    for key, value in flatten(result).items():
        group, _, metric = key.rpartition(" ")
        if key in parts["per_class"]:
            rows.append(("per class", group or key, metric if group else "iou", value))
        elif group in parts["per_grade"]:
            rows.append(("per grade", group, metric, value))
        elif group in parts["per_tone"]:
            rows.append(("per skin tone", group, metric, value))
        else:
            rows.append(("overall", "", key, value))
    return rows


def _group_rank(section: str, group: str) -> tuple:
    if section == "per skin tone" and group in TONE_ORDER:
        return (TONE_ORDER.index(group), group)
    if section == "per class" and group in [label.name for label in LABELS]:
        return ([label.name for label in LABELS].index(group), group)
    return (len(TONE_ORDER), group)


def versus_table(named: list[tuple[str, dict]]) -> pd.DataFrame:
    """One row per (section, group, metric), one column per (name, result); with two results also
    `change` (second minus first) and `better` (the model ahead, where higher or lower is known to
    be better). Rows one result lacks are kept, empty there. Equal names become `A: name`, `B: name`."""
    names = [name for name, _ in named]
    if len(set(names)) < len(names):
        names = [f"{chr(65 + i)}: {name}" for i, name in enumerate(names)]
    values: dict[tuple, dict] = {}
    first_seen: dict[tuple, int] = {}
    for name, (_, result) in zip(names, named, strict=True):
        for section, group, metric, value in sectioned(result):
            key = (section, group, metric)
            first_seen.setdefault(key, len(first_seen))
            values.setdefault(key, {})[name] = value
    values = {k: v for k, v in values.items() if any(x is not None for x in v.values())}
    order = sorted(values, key=lambda k: (SECTIONS.index(k[0]), _group_rank(k[0], k[1]), first_seen[k]))
    table = pd.DataFrame([{"section": s, "group": g, "metric": m, **{n: values[(s, g, m)].get(n) for n in names}}
                          for s, g, m in order], columns=["section", "group", "metric", *names])
    if len(names) == 2:
        a, b = (pd.to_numeric(table[n], errors="coerce") for n in names)
        table["change"] = (b - a).round(4)
        higher, lower = table["metric"].isin(HIGHER_IS_BETTER), table["metric"].isin(LOWER_IS_BETTER)
        table["better"] = np.select([(higher & (b > a)) | (lower & (b < a)), (higher & (a > b)) | (lower & (a < b))],
                                    [names[1], names[0]], "")
    return table


def section(table: pd.DataFrame, name: str) -> pd.DataFrame:
    """The rows of one section, without the section column (and the empty group column of overall)."""
    part = table[table["section"] == name].drop(columns="section")
    return part.drop(columns="group") if name == "overall" else part


def paired_photos(first: dict, second: dict, by: str = "first") -> pd.DataFrame:
    """Per photo both models' lesion outcomes (`<column>_a`, `<column>_b`) and `difference`: how far
    their errors (missed + false) lie apart on annotated photos, their counts on the others. Sorted
    by the first model's error (`by="first"`) or by the difference (`by="difference"`), worst first."""
    keep = ["file", "predicted", "matched", "missed", "false_positives", "error", "mode"]
    a, b = lesion_table(first), lesion_table(second)
    table = a.merge(b[keep], on="file", suffixes=("_a", "_b"))
    annotated = table["truth"].notna()
    table["difference"] = np.where(annotated, (table["error_a"] - table["error_b"]).abs(),
                                   (table["predicted_a"] - table["predicted_b"]).abs()).astype(int)
    return _sorted(table, "error_a", by)


def paired_labels(first: dict, second: dict, by: str = "first") -> pd.DataFrame:
    """Per photo of two image-label results: truth, both models' calls (`<condition>_pred_a`, `_b`),
    wrong calls of each (`wrong_a`, `wrong_b`) and `difference` (conditions they call differently)."""
    a, b = pd.DataFrame(first["rows"]), pd.DataFrame(second["rows"])
    conditions = [c for c in a.columns if f"{c}_pred" in a.columns and f"{c}_pred" in b.columns]
    extra = [f"{c}_{part}" for c in conditions for part in ("pred", "severity") if f"{c}_{part}" in b.columns]
    table = a.merge(b[["file", *extra]], on="file", suffixes=("_a", "_b"))
    for side in ("a", "b"):
        table[f"wrong_{side}"] = sum((table[c] != table[f"{c}_pred_{side}"]).astype(int) for c in conditions)
    table["difference"] = sum((table[f"{c}_pred_a"] != table[f"{c}_pred_b"]).astype(int) for c in conditions)
    return _sorted(table, "wrong_a", by)


def _sorted(table: pd.DataFrame, error: str, by: str) -> pd.DataFrame:
    keys = [error, "difference"] if by == "first" else ["difference", error]
    return table.sort_values([*keys, "file"], ascending=[False, False, True], kind="stable").reset_index(drop=True)


def lesion_picture(path: Path, *entries: dict | None, size: int = 640, markers=MARKERS) -> np.ndarray:
    """The photo at `size` px (long side) with the expert circles (green) of the first entry that
    has them and the predicted lesion centres of entry i in `markers[i]`."""
    from core.imageio import load_image

    image = load_image(path).copy()
    scale = size / max(image.shape[:2])
    image = cv2.resize(image, (round(image.shape[1] * scale), round(image.shape[0] * scale)), interpolation=cv2.INTER_AREA)
    circles = next((e["circles"] for e in entries if e and e.get("circles")), [])
    for x, y, r in circles:
        cv2.circle(image, (round(x * scale), round(y * scale)), max(2, round(r * scale)), EXPERT, 2)
    for entry, (colour, marker, _) in zip(entries, markers, strict=False):
        for x, y in (entry or {}).get("points", []):
            cv2.drawMarker(image, (round(x * scale), round(y * scale)), colour, marker, max(8, size // 64), 2)
    return image


def legend(names: list[str]) -> str:
    """Which marker is which model, for a caption."""
    return " · ".join(["green circles: expert lesions",
                       *(f"{marks}: {name}" for name, (_, _, marks) in zip(names, MARKERS, strict=False))])
