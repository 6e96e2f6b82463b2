"""Labels of real photos: the photo folder, the model's suggestions, agreement between curators,
the model's error against a curator, and the export that `glowai eval acne`, the Error analysis
page and `glowai train` read unchanged.

A label (one curator, one photo) is a dict:
    grades: condition -> grade index into GRADES (0 none ... 3 severe) or CANT_TELL (-1); a
        condition left out was not graded;
    points: [[x, y, r], ...] lesion centres and radii in the photo's pixels (upright, as decoded);
    note: free text;
    suggestion: what the model proposed when the curator started ({model, points, grades}), or
        None: the curator's distance from it is the model's error on the photo.

Points are matched as `glowai eval acne` matches predictions: a point inside a circle, one-to-one,
closest pairs first.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from core.errors import GlowAIError, NoFaceError
from core.labels import CONDITIONS

GRADES = ("none", "mild", "moderate", "severe")
CANT_TELL = -1
SEVERITY_BANDS = (15, 40, 70)  # report severity 0-100 -> grade: <15 none, <40 mild, <70 moderate, else severe
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")
EXPORTS = "glowai-labels"  # exports live in the photo folder, under this name
MAX_POINTS = 5000
CONDITION_NAMES = tuple(c.name for c in CONDITIONS)


def grade_of_severity(severity: int) -> int:
    return int(np.searchsorted(SEVERITY_BANDS, severity, side="right"))


def check_label(label: dict) -> dict:
    """A label as the store keeps it; anything malformed is refused with what is wrong."""
    grades = label.get("grades") or {}
    unknown = set(grades) - set(CONDITION_NAMES)
    if unknown:
        raise GlowAIError(f"grades for unknown conditions {sorted(unknown)}; valid: {', '.join(CONDITION_NAMES)}")
    clean_grades = {}
    for name, grade in grades.items():
        if grade is None:
            continue
        if isinstance(grade, bool) or not isinstance(grade, int | np.integer) or not CANT_TELL <= grade < len(GRADES):
            raise GlowAIError(f"grade {grade!r} for {name}: use 0-{len(GRADES) - 1} or {CANT_TELL} (can't tell)")
        clean_grades[name] = int(grade)
    note = str(label.get("note") or "")[:2000]
    suggestion = label.get("suggestion")
    if suggestion is not None:
        suggestion = {"model": str(suggestion.get("model"))[:128], "points": _check_points(suggestion.get("points")),
                      "grades": check_label({"grades": suggestion.get("grades")})["grades"]}
    return {"grades": clean_grades, "points": _check_points(label.get("points")), "note": note,
            "suggestion": suggestion}


def _check_points(points) -> list[list[float]]:
    points = points or []
    if len(points) > MAX_POINTS:
        raise GlowAIError(f"{len(points)} lesion points: at most {MAX_POINTS} per photo")
    clean = []
    for point in points:
        try:
            values = [float(v) for v in point]
        except (TypeError, ValueError):
            values = []
        if len(values) != 3 or not all(math.isfinite(v) for v in values) or min(values[:2]) < 0 or not 0 < values[2] <= 500:
            raise GlowAIError(f"lesion point {point!r}: use [x, y, radius] with x, y >= 0 and 0 < radius <= 500")
        clean.append([round(v, 1) for v in values])
    return clean


# -- the photo folder ----------------------------------------------------------------------------
def images_dir(folder: Path) -> Path:
    """Where the photos are: FOLDER/images for an ACNE04-like folder, else FOLDER itself."""
    folder = Path(folder).resolve()
    if not folder.is_dir():
        raise GlowAIError(f"{folder}: not a folder; pass a folder of photos (or an ACNE04-like folder with images/)")
    return (folder / "images").resolve() if (folder / "images").is_dir() else folder


def list_photos(folder: Path) -> list[str]:
    """Photo file names the studio can label: plain names (letters, digits, '.', '_', '-'), sorted."""
    from core.curation.store import _SAMPLE_ID

    images = images_dir(folder)
    names = sorted(p.name for p in images.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and _SAMPLE_ID.match(p.name)
                   and p.is_file() and p.resolve().is_relative_to(images))
    if not names:
        raise GlowAIError(f"{images}: no .jpg/.png/.webp photos with plain names found")
    return names


def photo_path(folder: Path, name: str) -> Path:
    """The photo `name` inside the folder; a name that is not plain, or leads outside, is refused."""
    from core.curation.store import check_sample_ids

    check_sample_ids([name])
    images = images_dir(folder)
    path = (images / name).resolve()
    if not path.is_relative_to(images) or not path.is_file():
        raise GlowAIError(f"{name!r} is not a photo of {images}")
    return path


# -- the model's suggestions ---------------------------------------------------------------------
def default_radius(shape: tuple[int, ...]) -> float:
    """A lesion radius for a point with no measured size: 0.8 % of the long side (5 px at 640,
    near the median expert circle of ACNE04)."""
    return round(max(2.0, 0.008 * max(shape[:2])), 1)


def suggest(analyzer, image: np.ndarray) -> dict:
    """What the analyser proposes for an RGB photo (face mode, else the whole frame): model,
    points [[x, y, r]] in photo pixels, grades, and a message when it is not a face-mode result."""
    try:
        analysis = analyzer.analyze(image)
    except NoFaceError:
        analysis = analyzer.analyze(image, whole_frame=True)
    seg = analysis.segmentation
    if seg is None:
        return {"model": None, "points": [], "grades": {}, "message": "no blemish model is installed: no suggestions"}
    radius = default_radius(image.shape)
    lesions = seg.lesions if seg.lesions is not None else np.zeros((0, 3))
    points = [[round(float(x / analysis.scale), 1), round(float(y / analysis.scale), 1), radius] for x, y, _ in lesions]
    grades = {name: grade_of_severity(entry["severity"]) for name, entry in (analysis.report["conditions"] or {}).items()}
    message = None if analysis.face_index is not None else "no face found: suggestions from the whole frame"
    return {"model": seg.model, "points": points, "grades": grades, "message": message}


# -- matching, the model's error, agreement --------------------------------------------------------
def match_points(points: list, circles: list) -> list[tuple[int, int, float]]:
    """One-to-one pairs (i, j, distance) of points [[x, y, ...]] inside circles [[x, y, r]],
    closest first (the rule of `glowai eval acne`)."""
    if not len(points) or not len(circles):
        return []
    p, c = np.asarray(points, float)[:, :2], np.asarray(circles, float)
    distance = np.hypot(p[:, None, 0] - c[None, :, 0], p[:, None, 1] - c[None, :, 1])
    candidates = sorted(zip(*np.nonzero(distance <= c[None, :, 2]), strict=True), key=lambda ij: distance[ij])
    used_p, used_c, pairs = set(), set(), []
    for i, j in candidates:
        if i not in used_p and j not in used_c:
            used_p.add(i)
            used_c.add(j)
            pairs.append((int(i), int(j), float(distance[i, j])))
    return pairs


def model_error(suggestion: dict, label: dict) -> dict:
    """How far the curator moved from the model's suggestion ({points, grades}) on one photo:
    suggestions kept in place, moved, deleted (the model's false positives), points added (its
    misses), and the grades changed (condition -> (model, curator))."""
    suggested, marked = suggestion["points"], label["points"]
    pairs = match_points(suggested, marked)
    kept = sum(d <= 1.0 for _, _, d in pairs)
    grades = {name: (suggestion["grades"].get(name), label["grades"].get(name)) for name in CONDITION_NAMES
              if name in suggestion["grades"] or name in label["grades"]}
    return {
        "suggested": len(suggested), "marked": len(marked), "kept": kept, "moved": len(pairs) - kept,
        "deleted": len(suggested) - len(pairs), "added": len(marked) - len(pairs),
        "mean_shift_px": round(float(np.mean([d for _, _, d in pairs])), 1) if pairs else None,
        "grades_changed": {name: pair for name, pair in grades.items() if pair[0] != pair[1]},
    }


def model_error_summary(labels: pd.DataFrame) -> pd.DataFrame:
    """Per curator and suggesting model, over the photos labelled from a suggestion: the model's
    lesion precision and recall against the curator's points, and how often each grade was kept."""
    rows = []
    usable = labels[labels["suggestion"].notna()] if len(labels) else labels
    for (who, model), group in usable.groupby([usable["curator"], usable["suggestion"].map(lambda s: s["model"])]):
        errors = [model_error(s, {"points": p, "grades": g})
                  for s, p, g in zip(group["suggestion"], group["points"], group["grades"], strict=True)]
        matched = sum(e["kept"] + e["moved"] for e in errors)
        suggested, marked = sum(e["suggested"] for e in errors), sum(e["marked"] for e in errors)
        changed = sum(len(e["grades_changed"]) for e in errors)
        graded = sum(len(g) for g in group["grades"])
        rows.append({"curator": who, "model": model, "photos": len(group), "points marked": marked,
                     "model precision": round(matched / suggested, 3) if suggested else None,
                     "model recall": round(matched / marked, 3) if marked else None,
                     "grades kept": round(1 - changed / graded, 3) if graded else None})
    return pd.DataFrame(rows, columns=["curator", "model", "photos", "points marked", "model precision",
                                       "model recall", "grades kept"])


def cohen_kappa(first: list[int], second: list[int]) -> float | None:
    """Cohen's kappa of two raters' categories; None with fewer than two items, 1.0 when both
    always agree on a single category."""
    if len(first) != len(second):
        raise ValueError("kappa needs the same items from both raters")
    if len(first) < 2:
        return None
    a, b = np.asarray(first), np.asarray(second)
    categories = np.union1d(a, b)
    observed = float(np.mean(a == b))
    expected = float(sum(np.mean(a == k) * np.mean(b == k) for k in categories))
    if expected >= 1.0:
        return 1.0
    return round((observed - expected) / (1.0 - expected), 4)


def point_f1(first: list, second: list) -> float | None:
    """F1 of one curator's points against another's circles (symmetric up to the radii); None
    when neither marked any point, i.e. nothing to agree on."""
    if not first and not second:
        return None
    matched = len(match_points(first, second))
    return round(2 * matched / (len(first) + len(second)), 4)


def agreement(labels: pd.DataFrame) -> pd.DataFrame:
    """Per pair of curators: photos both labelled, Cohen's kappa per condition (photos both graded,
    "can't tell" left out) and point-matching F1 pooled over the shared photos."""
    rows = []
    curators = sorted(labels["curator"].unique()) if len(labels) else []
    by_curator = {c: labels[labels["curator"] == c].set_index("photo") for c in curators}
    for i, first in enumerate(curators):
        for second in curators[i + 1:]:
            a, b = by_curator[first], by_curator[second]
            shared = sorted(set(a.index) & set(b.index))
            if not shared:
                continue
            row = {"curators": f"{first} / {second}", "photos": len(shared)}
            for name in CONDITION_NAMES:
                pairs = [(a.at[p, "grades"].get(name), b.at[p, "grades"].get(name)) for p in shared]
                pairs = [(x, y) for x, y in pairs if x is not None and y is not None and CANT_TELL not in (x, y)]
                row[f"kappa {name}"] = cohen_kappa([x for x, _ in pairs], [y for _, y in pairs])
            matched = sum(len(match_points(a.at[p, "points"], b.at[p, "points"])) for p in shared)
            total = sum(len(a.at[p, "points"]) + len(b.at[p, "points"]) for p in shared)
            row["point F1"] = round(2 * matched / total, 4) if total else None
            rows.append(row)
    return pd.DataFrame(rows, columns=["curators", "photos", *(f"kappa {n}" for n in CONDITION_NAMES), "point F1"])


# -- export --------------------------------------------------------------------------------------
def export_labels(folder: Path, labels: pd.DataFrame, curator: str, sizes: dict[str, tuple[int, int]]) -> Path:
    """Write one curator's labels as FOLDER/glowai-labels/<curator>-<time>/: labels.csv (file,
    one 0/1 column per graded condition, <condition>_grade 0-3; blank where not graded or can't
    tell), acne04v2_lesions.json (ACNE04-v2 layout, circles in the photo's pixels), export.json,
    and images/, a relative link to the photos (referenced, never copied). `sizes`: photo name ->
    (width, height) as decoded. Built in a hidden `.partial-*` folder and renamed into place, so a
    killed export leaves no half-written one (the next export removes the partial folder)."""
    from core.curation.versus import safe_name

    images = images_dir(folder)
    mine = labels[labels["curator"] == curator].sort_values("photo")
    if mine.empty:
        raise GlowAIError(f"curator {curator!r} has labelled no photo in {folder} yet")
    exports = Path(folder).resolve() / EXPORTS
    exports.mkdir(exist_ok=True)
    for stale in exports.glob(".partial-*"):
        shutil.rmtree(stale, ignore_errors=True)
    stamp = datetime.now(UTC)
    name = f"{safe_name(curator)}-{stamp:%Y%m%d-%H%M%S}"
    target = exports / name
    if target.exists():
        raise GlowAIError(f"{target} exists already; export again in a second")
    partial = exports / f".partial-{name}-{os.getpid()}"
    partial.mkdir()
    rows, images_json, annotations = [], [], []
    for image_id, record in enumerate(mine.to_dict("records")):
        row = {"file": record["photo"]}
        for condition in CONDITION_NAMES:
            grade = record["grades"].get(condition)
            known = grade is not None and grade != CANT_TELL
            row[condition] = int(grade > 0) if known else None
            row[f"{condition}_grade"] = grade if known else None
        row["lesions"] = len(record["points"])
        rows.append(row)
        width, height = sizes[record["photo"]]
        images_json.append({"id": image_id, "file_name": record["photo"], "width": width, "height": height})
        annotations += [{"id": len(annotations) + k, "image_id": image_id, "radius": r, "coordinates": [x, y],
                         "class_name": "acne"} for k, (x, y, r) in enumerate(record["points"])]
    table = pd.DataFrame(rows)
    # a condition never graded (not even "can't tell") is left out: Error analysis scores the columns it finds
    graded = [c for c in CONDITION_NAMES if any(c in grades for grades in mine["grades"])]
    table = table[["file", *graded, *(f"{c}_grade" for c in graded), "lesions"]]
    _write(partial / "labels.csv", table.to_csv(index=False, float_format="%.0f").encode())
    lesions = {"info": {"description": f"GlowAI studio labels by {curator}", "year": stamp.year,
                        "contributor": curator, "exported": stamp.isoformat(timespec="seconds")},
               "images": images_json, "annotations": annotations}
    _write(partial / "acne04v2_lesions.json", json.dumps(lesions, indent=1).encode())
    _write(partial / "export.json", json.dumps({"curator": curator, "photos": len(table), "lesions": len(annotations),
                                                "source": str(images), "at": stamp.isoformat(timespec="seconds")},
                                               indent=1).encode())
    os.symlink(os.path.relpath(images, target), partial / "images", target_is_directory=True)
    _fsync_dir(partial)
    os.rename(partial, target)
    _fsync_dir(exports)
    return target


def exported_folders(folder: Path) -> list[Path]:
    """Finished exports under the photo folder, newest last."""
    exports = Path(folder).resolve() / EXPORTS
    if not exports.is_dir():
        return []
    return sorted(p for p in exports.iterdir() if p.is_dir() and not p.name.startswith(".")
                  and (p / "acne04v2_lesions.json").is_file())


def _write(path: Path, data: bytes) -> None:
    with open(path, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
