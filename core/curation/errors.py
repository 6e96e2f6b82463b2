"""Error analysis of a blemish model on labelled real photos, as tables the studio can show.

Two kinds of labels:
- lesion circles (an ACNE04-like folder: images/ + acne04v2_lesions.json, grade in the file name):
  per photo, expert lesions found and missed, false positives, count error; a confusion matrix of
  the ACNE04 grade against the grade the predicted count implies (Hayashi's lesion-count bands);
- image-level labels (a CSV: `file` plus one 0/1 column per condition): per condition, present
  or not against the model's finding (severity at least `present_at`), precision and recall.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from core.errors import GlowAIError, NoFaceError
from core.labels import CONDITIONS

HAYASHI_BANDS = (5, 20, 50)  # lesions on a face: <=5 mild (0), <=20 moderate (1), <=50 severe (2), more very severe (3)
GRADE_NAMES = ("mild", "moderate", "severe", "very severe")


def hayashi_grade(count: int) -> int:
    return int(np.searchsorted(HAYASHI_BANDS, count, side="left"))


def lesion_table(result: dict) -> pd.DataFrame:
    """One row per photo of `core.model.evaluate.eval_acne`'s result, sorted worst first."""
    rows = []
    for name, entry in result["per_image"].items():
        truth = entry.get("truth")
        matched = entry.get("matched")
        count = entry.get("count", entry["predicted"])  # the model's count: its marked lesions and faint ones
        rows.append({
            "file": name, "grade": entry.get("grade"), "predicted_grade": hayashi_grade(count),
            "truth": truth, "predicted": entry["predicted"], "count": count, "matched": matched,
            "missed": None if truth is None else truth - matched,
            "false_positives": entry.get("false_positives"),
            "count_error": None if truth is None else count - truth,
            "tone": entry.get("tone", "unknown"), "mode": entry["mode"],
        })
    table = pd.DataFrame(rows)
    table["error"] = (table["missed"].fillna(0) + table["false_positives"].fillna(0)).astype(int)
    return table.sort_values(["error", "file"], ascending=[False, True], kind="stable").reset_index(drop=True)


def confusion(table: pd.DataFrame, truth: str, predicted: str, labels: list) -> pd.DataFrame:
    """Counts of (truth, predicted) pairs; rows truth, columns predicted, every label present."""
    known = table.dropna(subset=[truth, predicted])
    matrix = pd.crosstab(known[truth], known[predicted]).reindex(index=labels, columns=labels, fill_value=0)
    matrix.index.name, matrix.columns.name = f"{truth} (truth)", f"{predicted}"
    return matrix


def cell_samples(table: pd.DataFrame, truth: str, predicted: str, row, column) -> list[str]:
    """The photos behind one confusion-matrix cell."""
    return table.loc[(table[truth] == row) & (table[predicted] == column), "file"].tolist()


def per_tone(table: pd.DataFrame) -> pd.DataFrame:
    """Lesion recall, false positives per photo and photos, per skin-tone category."""
    annotated = table.dropna(subset=["truth"])
    grouped = annotated.groupby("tone").agg(photos=("file", "count"), truth=("truth", "sum"),
                                            matched=("matched", "sum"), fp=("false_positives", "sum"))
    grouped["recall"] = (grouped["matched"] / grouped["truth"].where(grouped["truth"] > 0)).round(3)
    grouped["fp_per_image"] = (grouped["fp"] / grouped["photos"]).round(2)
    return grouped[["photos", "recall", "fp_per_image"]].reset_index()


def image_level_eval(csv_path: Path, images: Path, weights: str | None = None, present_at: int = 15,
                     on_photo: Callable[[int, int], None] | None = None) -> pd.DataFrame:
    """Analyse every photo listed in the CSV; one row per photo with `<condition>` (truth, 0/1),
    `<condition>_pred` (0/1) and `<condition>_severity`. Photos without a face use whole-frame mode."""
    from core.pipeline import AnalyzeOptions, Analyzer
    from core.segmentation import SegmenterOptions

    labels = pd.read_csv(csv_path)
    conditions = [c.name for c in CONDITIONS if c.name in labels.columns]
    if "file" not in labels.columns or not conditions:
        raise GlowAIError(f"{csv_path}: needs a 'file' column and at least one of "
                          f"{', '.join(c.name for c in CONDITIONS)} (0/1)")
    rows = []
    with Analyzer(AnalyzeOptions(segmenter=SegmenterOptions(weights=weights), require_model=True)) as analyzer:
        for done, record in enumerate(labels.to_dict("records")):
            if on_photo is not None:
                on_photo(done, len(labels))
            path = (Path(images) / str(record["file"])).resolve()
            if not path.is_relative_to(Path(images).resolve()):
                raise GlowAIError(f"{record['file']!r} points outside {images}")
            try:
                analysis = analyzer.analyze(path)
            except NoFaceError:
                analysis = analyzer.analyze(path, whole_frame=True)
            row = {"file": record["file"], "tone": analysis.report["skin_tone"]["category"]}
            for name in conditions:
                severity = analysis.report["conditions"][name]["severity"]
                truth = record[name]  # blank: not graded or "can't tell" (left out of the scores)
                row.update({name: None if pd.isna(truth) else int(truth), f"{name}_pred": int(severity >= present_at),
                            f"{name}_severity": severity})
            rows.append(row)
    return pd.DataFrame(rows)


def per_class_scores(table: pd.DataFrame) -> pd.DataFrame:
    """Precision and recall per condition of an image-level table."""
    rows = []
    for label in CONDITIONS:
        if label.name not in table.columns:
            continue
        known = table[table[label.name].notna()]
        truth, pred = known[label.name].astype(bool), known[f"{label.name}_pred"].astype(bool)
        tp, fp, fn = int((truth & pred).sum()), int((~truth & pred).sum()), int((truth & ~pred).sum())
        rows.append({"condition": label.name, "photos with it": int(truth.sum()), "found": tp,
                     "precision": round(tp / (tp + fp), 3) if tp + fp else None,
                     "recall": round(tp / (tp + fn), 3) if tp + fn else None})
    return pd.DataFrame(rows)
