"""Why a lesion-head model misses ACNE04 lesions: how much heat each expert circle gets, by size,
and where the false peaks lie.

For every expert circle (ACNE04-v2) it takes the highest heatmap value inside the circle, then
prints the share of circles per band of that value and, per circle radius, the share that reach the
model's peak threshold. For the peaks at --fp-threshold it prints how many false ones lie close to
an expert circle that no peak matched (localisation errors) rather than far from any. And the
ceiling of a second stage (the lesion verifier, or any re-scoring of the peaks): the recall, and
the false positives per photo, if every peak on the skin from a floor up were marked; a re-scorer
cannot find a lesion that no peak reaches.

    .venv/bin/python scripts/acne_misses.py --data ../shared/data/acne04-dev --weights glowai-seg-v2
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.lesions import lesion_peaks  # noqa: E402
from core.model.evaluate import _lesions, acne_analyses, score_marked  # noqa: E402

BANDS = (0.0, 0.05, 0.1, 0.2, 0.35, 0.5, 1.01)
RADII = (0, 3, 5, 8, 12, 1000)  # expert circle radius, photo pixels
FLOORS = (0.05, 0.1, 0.15, 0.2, 0.3)  # peak floors of the second-stage ceiling


def circle_max(heat: np.ndarray, x: float, y: float, r: float) -> float:
    """Highest value of `heat` inside the circle (x, y, r) in its pixels; 0 when it lies outside."""
    r = max(r, 1.0)
    x0, x1 = int(max(0, x - r)), int(min(heat.shape[1], x + r + 1))
    y0, y1 = int(max(0, y - r)), int(min(heat.shape[0], y + r + 1))
    if x0 >= x1 or y0 >= y1:
        return 0.0
    yy, xx = np.mgrid[y0:y1, x0:x1]
    inside = (xx - x) ** 2 + (yy - y) ** 2 <= r * r
    return float(heat[y0:y1, x0:x1][inside].max()) if inside.any() else 0.0


def false_peak_distances(peaks: np.ndarray, circles: np.ndarray, scale: float) -> list[float]:
    """Greedy one-to-one matching as `glowai eval acne` does (strongest peak first, inside a circle);
    for each false peak, its distance to the nearest unmatched circle in radii (inf if none)."""
    used = np.zeros(len(circles), bool)
    false = []
    for x, y, _ in peaks:
        px, py = x / scale, y / scale
        if len(circles):
            distance = np.hypot(circles[:, 0] - px, circles[:, 1] - py)
            free = (distance <= circles[:, 2]) & ~used
            if free.any():
                used[np.flatnonzero(free)[np.argmin(distance[free])]] = True
                continue
        false.append((px, py))
    out = []
    for px, py in false:
        left = circles[~used]
        if len(left):
            distance = np.hypot(left[:, 0] - px, left[:, 1] - py) / np.maximum(left[:, 2], 1.0)
            out.append(float(distance.min()))
        else:
            out.append(float("inf"))
    return out


def ceiling(photos: dict[str, tuple[float, np.ndarray]], circles: dict[str, list],
            floors: tuple[float, ...] = FLOORS) -> list[dict]:
    """Per floor, `glowai eval acne`'s recall and false positives per photo when every peak from the
    floor up is marked; `photos`: name -> (analysis scale, peaks (N, 3) x, y, value in analysed px)."""
    values = {name: peaks[:, 2] for name, (_, peaks) in photos.items()}
    rows = []
    for floor in floors:
        scores = score_marked(photos, values, floor, photos.keys(), circles)
        marked = sum(int((v >= floor).sum()) for v in values.values())
        rows.append({"floor": floor, "recall": scores["recall"], "fp_per_image": scores["fp_per_image"],
                     "peaks_per_photo": round(marked / max(1, len(photos)), 1)})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, type=Path, help="ACNE04-like folder (images/ + acne04v2_lesions.json)")
    parser.add_argument("--weights", default=None, help="a lesion-head model: registry name or .safetensors path")
    parser.add_argument("--fp-threshold", type=float, default=0.25, help="peak value for the false-peak table")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)

    circles = _lesions(args.data)
    rows = []  # (radius in photo px, highest heat inside)
    distances: list[float] = []
    all_peaks = {}  # name -> (scale, peaks on the skin from the lowest floor up)
    for path, analysis in acne_analyses(args.data, args.weights, keep_lesion_heat=True):
        seg = analysis.segmentation
        if seg.lesion_heat is None:
            raise SystemExit(f"{seg.model} has no lesion head: use scripts/calibrate_acne.py")
        heat = np.where(analysis.regions.skin, seg.lesion_heat, 0).astype(np.float32)
        truth = np.array(circles.get(path.name, []), np.float64).reshape(-1, 3)
        s = analysis.scale
        for x, y, r in truth:
            rows.append((r, circle_max(heat, x * s, y * s, r * s)))
        if len(truth):
            distances += false_peak_distances(lesion_peaks(heat, args.fp_threshold), truth, s)
        all_peaks[path.name] = (s, lesion_peaks(heat, min(FLOORS)))
    rows = np.array(rows).reshape(-1, 2)
    from core.segmentation import Segmenter, SegmenterOptions

    with Segmenter(SegmenterOptions(weights=args.weights)) as segmenter:
        peak_threshold = segmenter.lesion_threshold
        verified = segmenter.verifier is not None  # then the threshold applies to sqrt(heat x p), not the heat
    bands = [{"heat": f"{lo}-{hi}", "share": round(float(np.mean((rows[:, 1] >= lo) & (rows[:, 1] < hi))), 3)}
             for lo, hi in zip(BANDS[:-1], BANDS[1:], strict=True)]
    radii = []
    for lo, hi in zip(RADII[:-1], RADII[1:], strict=True):
        members = (rows[:, 0] >= lo) & (rows[:, 0] < hi)
        if members.any():
            radii.append({"radius": f"{lo}-{hi}", "circles": int(members.sum()),
                          "reach_threshold": round(float(np.mean(rows[members, 1] >= peak_threshold)), 3),
                          "reach_0.2": round(float(np.mean(rows[members, 1] >= 0.2)), 3)})
    distances_ = np.array(distances)
    near = {f"within_{k}_radii": round(float(np.mean(distances_ <= k)), 3) if len(distances_) else None
            for k in (1.5, 2, 4)}
    print(f"{len(rows)} expert circles; highest heat inside each:")
    for band in bands:
        print(f"  {band['heat']:>9}: {band['share']:.1%}")
    what = "the marking threshold" + (" (with the verifier it scores sqrt(heat x p); here the heat)" if verified else "")
    print(f"by radius (photo px), share reaching {what} {peak_threshold} / 0.2:")
    for row in radii:
        print(f"  {row['radius']:>7}: {row['circles']:>5} circles, {row['reach_threshold']:.1%} / {row['reach_0.2']:.1%}")
    print(f"false peaks at {args.fp_threshold}: {len(distances)}; near an unmatched circle: "
          + ", ".join(f"{k.replace('_', ' ')} {v:.1%}" for k, v in near.items() if v is not None))
    limits = ceiling(all_peaks, circles)
    print("second-stage ceiling (every peak on the skin from the floor up marked):")
    for row in limits:
        print(f"  floor {row['floor']:<4}: recall {row['recall']:.3f} at {row['fp_per_image']:6.2f} FP/photo "
              f"({row['peaks_per_photo']} peaks a photo)")
    if args.json:
        args.json.write_text(json.dumps({"weights": args.weights, "peak_threshold": peak_threshold, "bands": bands,
                                         "by_radius": radii, "fp_threshold": args.fp_threshold,
                                         "false_peaks": len(distances), **near, "ceiling": limits}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
