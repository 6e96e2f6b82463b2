"""Side-by-side comparison of models, runs and evaluation results (`glowai eval compare`).

An item is a run folder (its best epoch from metrics.csv), an eval .json (from `glowai eval
acne|segmentation --json`), or, with a data folder, a model to evaluate there: a registry name,
a .safetensors path or `baseline:redspot`. Nested figures (per class, per grade, per skin tone)
become rows such as `levle2 recall` or `dark count_mae`, so one table holds them all.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pandas as pd

from core.errors import GlowAIError
from core.files import write_atomic

ACNE_KEYS = ("recall", "precision", "fp_per_image", "count_mae", "spearman")


def flatten(result: dict) -> dict[str, float]:
    """The numbers of an eval result, nested breakdowns as `<group> <metric>` rows."""
    flat = {k: v for k, v in result.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    flat.update(result.get("per_class", {}))
    for part in ("per_grade", "per_tone"):
        for group, scores in (result.get(part) or {}).items():
            if isinstance(scores, dict):
                flat.update({f"{group} {key}": scores.get(key) for key in ACNE_KEYS})
            elif isinstance(scores, (int, float)):  # eval segmentation: tone -> mIoU
                flat[f"{group} miou"] = scores
    return flat


def load_item(item: str | Path, data: Path | None = None, progress: bool = False,
              results: dict[str, dict] | None = None) -> tuple[str, dict]:
    """(column name, flat figures) of one item; see the module docstring. A model evaluated here
    leaves its whole result in `results` (by model name) when given."""
    path = Path(item)
    if path.is_dir() and (path / "metrics.csv").is_file():
        table = pd.read_csv(path / "metrics.csv")
        score = table["val_miou"] + (table["val_lesion_f1"].fillna(0) if "val_lesion_f1" in table else 0)
        best = table.loc[score.idxmax()]
        flat = {"miou": best["val_miou"], "epoch": int(best["epoch"]),
                **{c.replace("iou_", ""): best[c] for c in table.columns if c.startswith("iou_")}}
        if "val_lesion_f1" in table:
            flat.update(lesion_f1=best["val_lesion_f1"], lesion_recall=best["val_lesion_recall"])
        return path.name, flat
    if path.is_file() and path.suffix == ".json":
        result = json.loads(path.read_text())
        return str(result.get("model") or path.stem), flatten(result)
    if data is not None:
        result = _evaluate(str(item), Path(data), progress)
        if results is not None:
            results[result["model"]] = result
        return result["model"], flatten(result)
    raise GlowAIError(f"{item}: pass a run folder (with metrics.csv) or an eval .json, or a model name with --data")


def _evaluate(weights: str, data: Path, progress: bool) -> dict:
    from core.model.evaluate import eval_acne, eval_segmentation

    if (data / "acne04v2_lesions.json").is_file():
        result = eval_acne(data, weights, progress=progress)
    elif (data / "manifest.parquet").is_file():
        result = eval_segmentation(data, weights, progress=progress)
    else:
        raise GlowAIError(f"{data}: neither an ACNE04-like folder (acne04v2_lesions.json) nor a synth dataset "
                          "(manifest.parquet)")
    return result


def compare_all(items: list[str | Path], out_png: Path | None = None, data: Path | None = None,
                progress: bool = False, results: dict[str, dict] | None = None) -> pd.DataFrame:
    """One row per metric, one column per item (named by letter and model or run); models
    evaluated on `data` leave their whole results in `results` when given."""
    if len(items) < 2:
        raise GlowAIError("compare needs at least two items")
    loaded = [load_item(item, data, progress, results) for item in items]
    figures = [flat for _, flat in loaded]
    keys = [k for k in figures[0] if all(k in f for f in figures[1:])] or sorted(set().union(*figures))
    columns = {f"{chr(65 + i)}: {name}": [flat.get(k) for k in keys] for i, (name, flat) in enumerate(loaded)}
    table = pd.DataFrame({"metric": keys, **columns})
    if out_png is not None:
        _plot(table, out_png)
    return table


def compare(run_a: Path, run_b: Path, out_png: Path | None = None) -> pd.DataFrame:
    """Side-by-side table of two runs (folders with metrics.csv) or two eval JSON files."""
    return compare_all([run_a, run_b], out_png)


def _plot(table: pd.DataFrame, out_png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    numeric = table.dropna()
    numeric = numeric[~numeric["metric"].str.contains(" ")].head(12)  # the headline figures only
    fig, ax = plt.subplots(figsize=(max(5, len(numeric) * 0.9), 3.5))
    x = np.arange(len(numeric))
    width = 0.8 / (len(table.columns) - 1)
    for i, column in enumerate(table.columns[1:]):
        ax.bar(x - 0.4 + width * (i + 0.5), numeric[column].astype(float), width, label=column)
    ax.set_xticks(x, numeric["metric"], rotation=30, ha="right")
    ax.legend(fontsize=8)
    fig.tight_layout()
    picture = io.BytesIO()
    fig.savefig(picture, format="png", dpi=90)
    plt.close(fig)
    write_atomic(Path(out_png), picture.getvalue())  # makes the folder; never a half-written file
