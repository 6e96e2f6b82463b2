"""The skin report: per zone and condition area %, lesion count and severity; skin tone; quality.

Severity (0-100) of a condition in a zone, from its affected area % (A) and lesion count (N):

    severity = round(100 * (1 - exp(-(A / A_c + N / N_c))))

A_c is the area % at which severity reaches 63 from area alone, N_c the same for lesion count
(`SEVERITY_SCALES`). Acne counts lesions; diffuse conditions count area only. The same formula
on whole-face totals gives the image-level condition vector. The schema of the JSON report is
core/data/report.schema.json; bump REPORT_VERSION when its shape changes.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from core.colour import ita_category, ita_degrees
from core.labels import CONDITIONS
from core.maskops import mask_bounds
from core.quality import QualityCheck
from core.regions import FaceRegions

REPORT_VERSION = "1.0"
SEVERITY_SCALES: dict[str, tuple[float, float]] = {  # condition -> (A_c area %, N_c lesions)
    "acne": (4.0, 12.0),
    "redness": (15.0, math.inf),
    "texture": (20.0, math.inf),
    "dryness": (15.0, math.inf),
}
MIN_LESION_FRACTION = 2e-5  # components smaller than this fraction of the skin area are noise


def severity(condition: str, area_pct: float, lesions: int) -> int:
    area_scale, count_scale = SEVERITY_SCALES[condition]
    return int(round(100 * (1 - math.exp(-(area_pct / area_scale + lesions / count_scale)))))


def condition_scores(label_map: np.ndarray, region: np.ndarray, min_lesion_px: int,
                     lesion_points: np.ndarray | None = None, lesion_count: float | None = None) -> dict[str, dict]:
    """Scores of every condition inside the bool mask `region`. Acne lesions are `lesion_count`
    (a lesion-centre model's density summed over `region`) when given, else the `lesion_points`
    ((N, 2) int row, col inside the label map) that fall in `region` when a lesion-centre model
    gave them, else the connected acne components of the label map."""
    pixels = int(np.count_nonzero(region))
    scores = {}
    for label in CONDITIONS:
        mask = (label_map == label.index) & region
        area = 100.0 * np.count_nonzero(mask) / pixels if pixels else 0.0
        lesions = 0
        if label.name == "acne" and lesion_count is not None:
            lesions = int(round(lesion_count))
        elif label.name == "acne" and lesion_points is not None:
            lesions = int(np.count_nonzero(region[lesion_points[:, 0], lesion_points[:, 1]])) if len(lesion_points) else 0
        elif area:
            count, _, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
            lesions = int((stats[1:, cv2.CC_STAT_AREA] >= min_lesion_px).sum())
        scores[label.name] = {"area_pct": round(float(area), 2), "lesions": lesions,
                              "severity": severity(label.name, area, lesions)}
    return scores


def skin_tone(lab_median: tuple[float, float, float]) -> dict:
    lightness, _, b = lab_median
    ita = ita_degrees(lightness, b)
    return {"ita": round(ita, 1), "category": ita_category(ita), "lab": [round(v, 1) for v in lab_median]}


def build_report(regions: FaceRegions, label_map: np.ndarray | None, quality: list[QualityCheck],
                 lesions: np.ndarray | None = None, lesion_density: np.ndarray | None = None) -> dict:
    """Report body (JSON-ready). `label_map` None means no blemish model ran: conditions are null.
    `lesions`: acne lesion centres (N, 2+) x, y in analysed pixels from a lesion-centre model
    (`Segmentation.counted_lesions`); they give the acne counts, unless `lesion_density` (float HxW
    lesions per analysed pixel, `Segmentation.lesion_density`) does: its sum over each zone."""
    skin_px = int(np.count_nonzero(regions.skin))
    min_lesion_px = max(3, int(MIN_LESION_FRACTION * skin_px))
    # work inside the bounding box of the skin: the rest of the photo holds nothing to count
    ys, xs = np.nonzero(regions.skin.any(axis=1))[0], np.nonzero(regions.skin.any(axis=0))[0]
    box = (slice(ys[0], ys[-1] + 1), slice(xs[0], xs[-1] + 1)) if skin_px else (slice(0, 0), slice(0, 0))
    zone_map, skin = regions.zone_map[box], regions.skin[box]
    label_map = label_map[box] if label_map is not None else None
    density = lesion_density[box] if lesion_density is not None else None
    points = None
    if lesions is not None and skin_px:
        rows = np.clip(np.round(lesions[:, 1]).astype(int), 0, regions.skin.shape[0] - 1) - box[0].start
        cols = np.clip(np.round(lesions[:, 0]).astype(int), 0, regions.skin.shape[1] - 1) - box[1].start
        inside = (rows >= 0) & (rows < skin.shape[0]) & (cols >= 0) & (cols < skin.shape[1])
        points = np.column_stack([rows[inside], cols[inside]])
    zones = {}
    for index, name in enumerate(regions.zone_names, start=1):
        mask = zone_map == index
        conditions = None
        if label_map is not None:  # scored inside the zone's own bounding box: the same counts, a fifth of the pixels
            x, y, w, h = mask_bounds(mask)
            inside = None if points is None else points[(points[:, 0] >= y) & (points[:, 0] < y + h) &
                                                        (points[:, 1] >= x) & (points[:, 1] < x + w)] - (y, x)
            zone_count = None if density is None else float(density[y:y + h, x:x + w][mask[y:y + h, x:x + w]].sum())
            conditions = condition_scores(label_map[y:y + h, x:x + w], mask[y:y + h, x:x + w], min_lesion_px, inside,
                                          zone_count)
        zones[name] = {
            "skin_pct": round(float(100.0 * np.count_nonzero(mask) / skin_px), 2) if skin_px else 0.0,
            "conditions": conditions,
        }
    total = None if density is None else float(density[skin].sum())
    overall = condition_scores(label_map, skin, min_lesion_px, points, total) if label_map is not None else None
    return {
        "zones": zones,
        "conditions": overall,
        "skin_tone": skin_tone(regions.skin_lab_median),
        "skin_pixels": skin_px,
        "quality": [{"name": q.name, "value": q.value, "ok": q.ok, "message": None if q.ok else q.message}
                    for q in quality],
    }
