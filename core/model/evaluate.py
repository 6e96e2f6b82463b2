"""Evaluation of the blemish model: synthetic segmentation metrics and real acne photos (ACNE04)."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from tqdm import tqdm

from core.errors import GlowAIError, NoFaceError
from core.labels import LABELS, NUM_CLASSES
from core.model.train import confusion, iou_from_confusion

BASELINE = "baseline:redspot"


def _segmenter(weights: str | None, runtime: str = "auto", thresholds: dict[str, float] | None = None):
    from core.segmentation import Segmenter, SegmenterOptions

    return Segmenter(SegmenterOptions(weights=weights, runtime=runtime, thresholds=thresholds))


def eval_segmentation(data: Path, weights: str | None = None, split: str = "val", progress: bool = True,
                      runtime: str = "auto", thresholds: dict[str, float] | None = None) -> dict:
    """mIoU over the four conditions on a synth dataset's `split` (held-out identities by default).

    The model sees each whole sample image (a face crop) exactly as `Segmenter` runs in analyze,
    with its registry's decision thresholds unless `thresholds` are given ({} for the plain argmax).
    """
    data = Path(data)
    manifest_path = data / "manifest.parquet"
    if not manifest_path.is_file():
        raise GlowAIError(f"{data}: no manifest.parquet; pass a folder made by `glowai synth`")
    rows = pd.read_parquet(manifest_path)
    rows = rows[rows["split"] == split].sort_values("id")
    if rows.empty:
        raise GlowAIError(f"{data}: no {split} samples")
    segmenter = _segmenter(weights, runtime, thresholds)
    total = np.zeros((NUM_CLASSES, NUM_CLASSES), np.int64)
    per_tone: dict[str, np.ndarray] = {}
    per_sample = {}
    for row in tqdm(list(rows.itertuples()), desc="segmentation", disable=not progress):
        image = cv2.cvtColor(cv2.imread(str(data / row.image)), cv2.COLOR_BGR2RGB)
        truth = cv2.imread(str(data / row.mask), cv2.IMREAD_UNCHANGED)
        predicted = segmenter.segment(image, np.ones(truth.shape, bool)).label_map
        matrix = confusion(predicted, truth)
        total += matrix
        per_tone[row.tone] = per_tone.get(row.tone, 0) + matrix
        values = [v for v in iou_from_confusion(matrix).values() if not np.isnan(v)]
        per_sample[row.id] = round(float(np.mean(values)), 4) if values else None
    per_class = iou_from_confusion(total)
    tones = {tone: round(float(np.nanmean(list(iou_from_confusion(m).values()))), 4) for tone, m in per_tone.items()}
    return {
        "model": segmenter.spec.name,
        "split": split,
        "thresholds": {LABELS[index].name: value for index, value in segmenter.thresholds if np.isfinite(value)},
        "count": len(rows),
        "miou": round(float(np.nanmean(list(per_class.values()))), 4),
        "per_class": {k: round(v, 4) for k, v in per_class.items()},
        "per_tone": tones,
        "per_tone_spread": round(max(tones.values()) - min(tones.values()), 4) if tones else None,
        "confusion": {"labels": [label.name for label in LABELS], "rows_truth_columns_prediction": total.tolist()},
        "per_sample": per_sample,
    }


def red_spots(image: np.ndarray, skin: np.ndarray) -> np.ndarray:
    """The classical baseline: a* minus its local median, thresholded, inside skin -> bool spots."""
    from core.colour import rgb_to_lab

    a = rgb_to_lab(image)[..., 1]
    size = max(3, int(0.05 * max(image.shape[:2])) | 1)
    local = cv2.medianBlur(np.clip(a + 128, 0, 255).astype(np.uint8), size).astype(np.float32) - 128
    return ((a - local) > 7.0) & skin


def _lesions(data: Path) -> dict[str, list[tuple[float, float, float]]]:
    """File name -> expert lesion circles (x, y, radius) in the photo's pixels."""
    from core.model.data import acne04_circles

    return {name: [tuple(float(v) for v in circle) for circle in circles]
            for name, circles in acne04_circles(data).items()}


def _match(predicted: list[tuple[float, float]], circles: list[tuple[float, float, float]]) -> int:
    """One-to-one matches: a prediction inside a circle, closest pairs first."""
    pairs = sorted((np.hypot(px - cx, py - cy), i, j) for i, (px, py) in enumerate(predicted)
                   for j, (cx, cy, r) in enumerate(circles) if np.hypot(px - cx, py - cy) <= r)
    used_p, used_c = set(), set()
    for _, i, j in pairs:
        if i not in used_p and j not in used_c:
            used_p.add(i)
            used_c.add(j)
    return len(used_p)


def acne_analyses(data: Path, weights: str | None = None, progress: bool = True,
                  on_photo: Callable[[int, int], None] | None = None, thresholds: dict | None = None,
                  keep_lesion_heat: bool = False, runtime: str = "auto"):
    """Yield (photo path, Analysis) for every ACNE04 photo in `data`/images: analysed as a face when
    one is found, else in whole-frame mode (`analysis.face_index` is None then)."""
    from core.pipeline import AnalyzeOptions, Analyzer
    from core.segmentation import SegmenterOptions

    paths = sorted(p for p in (Path(data) / "images").glob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png", ".webp"))
    if not paths:
        raise GlowAIError(f"{data}/images: no photos")
    baseline = weights == BASELINE
    seg_options = SegmenterOptions(weights=None if baseline else weights, thresholds=thresholds,
                                   keep_lesion_heat=keep_lesion_heat, runtime=runtime)
    face_analyzer = Analyzer(AnalyzeOptions(segmenter=seg_options, segment=not baseline, require_model=not baseline))
    frame_analyzer = Analyzer(AnalyzeOptions(segmenter=seg_options, segment=not baseline, whole_frame=True,
                                             require_model=not baseline, detector=face_analyzer.options.detector))
    try:
        for done, path in enumerate(tqdm(paths, desc="acne", disable=not progress)):
            if on_photo is not None:
                on_photo(done, len(paths))
            try:
                yield path, face_analyzer.analyze(path)
            except NoFaceError:
                yield path, frame_analyzer.analyze(path)
    finally:
        face_analyzer.close()
        frame_analyzer.close()


def lesion_points(spots: np.ndarray, scale: float, min_area: int = 4) -> list[tuple[float, float]]:
    """Centres of the connected components of `spots` (bool, analysed pixels) of at least
    `min_area` px, in the photo's own pixels (analysed pixels / `scale`)."""
    count, _, stats, centroids = cv2.connectedComponentsWithStats(spots.astype(np.uint8), connectivity=8)
    return [(float(centroids[k][0] / scale), float(centroids[k][1] / scale))
            for k in range(1, count) if stats[k, cv2.CC_STAT_AREA] >= min_area]


def grade_of(name: str) -> int | None:
    """ACNE04's global grade from a file name (levleN_...), None when it has none."""
    match = re.match(r"levle(\d)", name)
    return int(match.group(1)) if match else None


def dev_halves(names) -> dict[str, set[str]]:
    """The split every dev-calibrating script uses: the sorted photo names at even positions choose
    ("calibration"), those at odd positions score the choice ("held_out"); "all" holds both."""
    names = sorted(names)
    return {"calibration": set(names[0::2]), "held_out": set(names[1::2]), "all": set(names)}


def choose_by_recall(table: list[dict], max_fp: float) -> tuple[dict, bool]:
    """The row of `table` (each with a `score_acne` result per half) with the most recall on the
    calibration half at <= max_fp false positives per photo there, and True; where no row is that
    strict, the row with the fewest false positives, and False."""
    allowed = [row for row in table if row["calibration"]["fp_per_image"] <= max_fp]
    if allowed:
        return max(allowed, key=lambda row: row["calibration"]["recall"] or 0.0), True
    return min(table, key=lambda row: row["calibration"]["fp_per_image"]), False


def score_marked(photos: dict[str, tuple], values: dict[str, np.ndarray], threshold: float, members,
                 circles: dict[str, list]) -> dict:
    """`score_acne` (no breakdown) of the photos in `members` when a candidate is marked where its
    value reaches `threshold`; `photos`: name -> (analysis scale, candidates (N, >=2) x, y in
    analysed pixels, ...), `values`: name -> (N,) the value each candidate is marked by."""
    entries = {}
    for name in members:
        scale, found = photos[name][0], photos[name][1]
        entries[name] = {"points": [(float(x / scale), float(y / scale)) for x, y in found[values[name] >= threshold, :2]]}
    return score_acne(entries, circles, breakdown=False)


def score_acne(photos: dict[str, dict], circles: dict[str, list], breakdown: bool = True) -> dict:
    """Lesion metrics from per-photo entries holding `points` (predicted lesion centres, photo
    pixels) and, optionally, `count` (the model's lesion count when it counts more than it marks;
    else the number of points): recall, precision and false positives score the points, count MAE
    and Spearman(count, grade) the count. Entries of annotated photos gain truth / matched /
    false_positives / circles.
    With `breakdown`, the same figures per ACNE04 grade (file prefix levleN) and, where entries
    hold a `tone`, per skin-tone category, under per_grade / per_tone."""
    scores = _lesion_scores(photos, circles)
    if breakdown:
        grades = sorted({grade_of(name) for name in photos} - {None})
        scores["per_grade"] = {f"levle{g}": _lesion_scores({n: e for n, e in photos.items() if grade_of(n) == g},
                                                           circles) for g in grades}
        tones = sorted({e["tone"] for e in photos.values() if e.get("tone")})
        scores["per_tone"] = {tone: _lesion_scores({n: e for n, e in photos.items() if e.get("tone") == tone},
                                                   circles) for tone in tones}
    return scores


def _lesion_scores(photos: dict[str, dict], circles: dict[str, list]) -> dict:
    from scipy.stats import spearmanr

    matched = total_pred = total_truth = 0
    counts, grades = [], []
    for name, entry in photos.items():
        entry["predicted"] = len(entry["points"])
        entry["grade"] = grade_of(name)
        counts.append(entry.get("count", entry["predicted"]))
        grades.append(entry["grade"])
        if name in circles:
            truth = circles[name]
            hits = _match(entry["points"], truth)
            matched += hits
            total_pred += entry["predicted"]
            total_truth += len(truth)
            entry.update(truth=len(truth), matched=hits, false_positives=entry["predicted"] - hits,
                         circles=[[round(v, 1) for v in circle] for circle in truth])
    annotated = [e for e in photos.values() if "truth" in e]
    valid = [(c, g) for c, g in zip(counts, grades, strict=True) if g is not None]
    varied = len(valid) > 2 and len({g for _, g in valid}) > 1 and len({c for c, _ in valid}) > 1
    rho = spearmanr([c for c, _ in valid], [g for _, g in valid]).statistic if varied else None
    return {
        "photos": len(photos),
        "annotated": len(annotated),
        "recall": round(matched / total_truth, 4) if total_truth else None,
        "precision": round(matched / total_pred, 4) if total_pred else None,
        "fp_per_image": round(sum(e["false_positives"] for e in annotated) / max(1, len(annotated)), 3),
        "count_mae": round(float(np.mean([abs(e.get("count", e["predicted"]) - e["truth"]) for e in annotated])), 3)
        if annotated else None,
        "spearman": round(float(rho), 4) if rho is not None else None,
    }


def eval_acne(data: Path, weights: str | None = None, min_area: int = 4, progress: bool = True,
              on_photo: Callable[[int, int], None] | None = None, runtime: str = "auto") -> dict:
    """Lesion recall/precision, false positives per photo, count error and Spearman(count, grade)
    on ACNE04 photos. Faces are analysed as faces when found, else in whole-frame mode.
    per_image keeps, for error analysis, the predicted lesion centres and the expert circles (in
    the photo's pixels) and the skin-tone category; `on_photo(done, total)` reports progress."""
    data = Path(data)
    circles = _lesions(data)
    baseline = weights == BASELINE
    per_image, model_name = {}, BASELINE
    for path, analysis in acne_analyses(data, weights, progress, on_photo, runtime=runtime):
        seg = analysis.segmentation
        if not baseline:
            model_name = seg.model
        count = None
        if seg is not None and seg.lesions is not None:  # a lesion-centre model: its peaks are the lesions
            points = [(float(x / analysis.scale), float(y / analysis.scale)) for x, y, _ in seg.lesions]
            count = seg.lesion_count  # what the report counts: heatmap mass, or the marked and faint peaks
        else:
            spots = red_spots(analysis.image, analysis.regions.skin) if baseline else seg.label_map == 1
            points = lesion_points(spots, analysis.scale, min_area)
        per_image[path.name] = {"mode": "face" if analysis.face_index is not None else "whole_frame",
                                "tone": analysis.report["skin_tone"]["category"],
                                "points": points, **({} if count is None else {"count": count})}
    scores = score_acne(per_image, circles)
    for entry in per_image.values():
        entry["points"] = [[round(x, 1), round(y, 1)] for x, y in entry["points"]]
    return {"model": model_name, **scores,
            "whole_frame": sum(e["mode"] == "whole_frame" for e in per_image.values()), "per_image": per_image}
