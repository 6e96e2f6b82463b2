"""Choose the acne decision threshold of a blemish model on real photos, honestly.

A model trained on synthetic blemishes is not calibrated for real photos: it can be shy (real
papules raise its acne probability without winning the argmax) or eager (it marks every freckle).
This script analyses every ACNE04 photo once, keeps the acne probability map, and scores lesion
detection where that probability reaches each of a range of thresholds ("argmax" = the model's
plain label map). The photos are split in two by their sorted position (even = calibration, odd =
held out); the threshold is chosen on the calibration half only (highest lesion recall with at
most --max-fp false positives per photo) and the held-out half reports what it is worth.

    .venv/bin/python scripts/calibrate_acne.py --data ../shared/data/acne04-dev \
        --weights runs/RUN/best.safetensors --json runs/RUN/calibration-acne.json

Write the chosen value into the model's registry entry as "thresholds": {"acne": T} (ship_model.py
takes --acne-threshold) and rerun `glowai eval acne` for the figures of the model card. For a model
with a lesion-centre head the thresholds are the heatmap's peak values instead (registry
"lesion_threshold"; ship_model.py --lesion-threshold), and a second one is chosen for the count:
peaks from it up are counted (marked or faint), the one with the least count MAE on the
calibration half (registry "lesion_count_threshold"; ship_model.py --lesion-count-threshold).
It also fits the heatmap-mass count: the heat above a floor on skin, summed at the network's input
scale, divided by the mass of one lesion; the floor and mass with the least count MAE on the
calibration half (registry "lesion_count_floor" and "lesion_count_mass"; ship_model.py
--lesion-count-floor --lesion-count-mass). Both counts are reported on the held-out half.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.labels import label_by_name  # noqa: E402
from core.lesions import lesion_density, lesion_peaks  # noqa: E402
from core.model.evaluate import _lesions, acne_analyses, choose_by_recall, dev_halves, lesion_points, score_acne  # noqa: E402

LESION_THRESHOLDS = (0.6, 0.55, 0.5, *(t / 100 for t in range(48, 19, -1)), 0.15, 0.1)  # 0.01 apart where it matters
MASS_FLOORS = (0.03, 0.05, 0.08, 0.1)
MASSES = tuple(round(m, 2) for m in np.arange(2.0, 40.01, 0.5))  # heat mass of one lesion, network pixels
THRESHOLDS = (0.99, 0.98, 0.97, 0.95, 0.9, 0.85, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.05)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, type=Path, help="ACNE04-like folder (images/ + acne04v2_lesions.json)")
    parser.add_argument("--weights", default=None, help="registry name or .safetensors path (default: shipped model)")
    parser.add_argument("--runtime", default="auto", help="segmenter runtime (compare models on the same one)")
    parser.add_argument("--max-fp", type=float, default=2.5, help="false positives per photo allowed on calibration")
    parser.add_argument("--min-area", type=int, default=4)
    parser.add_argument("--json", type=Path, help="write the whole table here")
    args = parser.parse_args(argv)

    acne = label_by_name("acne").index
    circles = _lesions(args.data)
    photos = []  # (name, argmax acne spots, acne probability or lesion heatmap on skin, scale)
    masses: dict[str, dict[float, float]] = {}  # name -> floor -> heat mass above it on skin, network pixels
    on_skin = total = 0  # expert lesion centres that fall on the skin the model is shown
    lesion_head = False
    for path, analysis in acne_analyses(args.data, args.weights, thresholds={}, keep_lesion_heat=True,
                                         runtime=args.runtime):
        seg = analysis.segmentation
        skin = analysis.regions.skin
        lesion_head = seg.lesion_heat is not None  # then the thresholds are the heatmap's peak values
        score_map = seg.lesion_heat if lesion_head else seg.probabilities[acne]
        probability = np.where(skin, score_map, 0).astype(np.float16)
        photos.append((path.name, seg.label_map == acne, probability, analysis.scale))
        if lesion_head:
            masses[path.name] = {floor: float(lesion_density(seg.lesion_heat, skin, floor, 1.0, seg.input_scale).sum())
                                 for floor in MASS_FLOORS}
        for x, y, _ in circles.get(path.name, []):
            xi, yi = int(x * analysis.scale), int(y * analysis.scale)
            total += 1
            on_skin += bool(0 <= yi < skin.shape[0] and 0 <= xi < skin.shape[1] and skin[yi, xi])
    reachable = on_skin / max(1, total)
    print(f"expert lesion centres on the analysed skin: {on_skin}/{total} ({reachable:.1%}), the ceiling of recall")

    def score(threshold: float | None, names: set[str], count_threshold: float | None = None) -> dict:
        entries = {}
        for name, argmax, probability, scale in photos:
            if name in names and lesion_head:
                low = min(threshold or 0.5, count_threshold or 1.0)
                peaks = lesion_peaks(probability.astype(np.float32), low)
                marked = peaks[peaks[:, 2] >= (threshold or 0.5)]
                entries[name] = {"points": [(float(x / scale), float(y / scale)) for x, y, _ in marked],
                                 "count": len(peaks)}
            elif name in names:
                spots = argmax if threshold is None else probability >= threshold
                entries[name] = {"points": lesion_points(spots, scale, args.min_area)}
        return score_acne(entries, circles, breakdown=False)

    halves = dev_halves(p[0] for p in photos)
    table = []
    print(f"{'threshold':>9} | {'half':<11} | recall  precision  FP/photo  count MAE  Spearman")
    for threshold in (LESION_THRESHOLDS if lesion_head else (None, *THRESHOLDS)):
        row = {"threshold": threshold}
        for half, members in halves.items():
            row[half] = score(threshold, members)
            m = row[half]
            print(f"{'argmax' if threshold is None else threshold:>9} | {half:<11} | {m['recall']:.3f}   "
                  f"{m['precision'] or 0:.3f}      {m['fp_per_image']:>6.2f}    {m['count_mae']:>7.2f}    {m['spearman'] if m['spearman'] is not None else float('nan'):.3f}")
        table.append(row)
    chosen, met = choose_by_recall(table, args.max_fp)
    rule = (f"the most recall at FP/photo <= {args.max_fp}" if met  # else say so: the fewest false positives
            else f"no threshold reaches FP/photo <= {args.max_fp}; fewest false positives")
    label = "argmax" if chosen["threshold"] is None else chosen["threshold"]
    print(f"\nchosen on the calibration half ({rule}): {label}")
    print(f"held out: recall {chosen['held_out']['recall']}, FP/photo {chosen['held_out']['fp_per_image']}, "
          f"Spearman {chosen['held_out']['spearman']}")
    counting = None
    if lesion_head:
        # The marked peaks are precise but few; the expert counts are matched best by counting the
        # fainter peaks too. The count threshold: the least count MAE on the calibration half.
        print(f"\n{'count from':>10} | {'half':<11} | count MAE  Spearman   (marked peaks >= {chosen['threshold']})")
        counting = []
        for count_threshold in [t / 100 for t in range(round(chosen["threshold"] * 100), 14, -1)]:
            row = {"count_threshold": count_threshold}
            for half, members in halves.items():
                m = score(chosen["threshold"], members, count_threshold)
                row[half] = {"count_mae": m["count_mae"], "spearman": m["spearman"]}
                print(f"{count_threshold:>10} | {half:<11} | {m['count_mae']:>8.2f}   {m['spearman'] or float('nan'):.3f}")
            counting.append(row)
        best_count = min(counting, key=lambda r: r["calibration"]["count_mae"])
        print(f"\ncount threshold chosen on the calibration half (least count MAE): {best_count['count_threshold']}")
        print(f"held out: count MAE {best_count['held_out']['count_mae']}, Spearman {best_count['held_out']['spearman']}"
              f" (marked peaks only: {chosen['held_out']['count_mae']}, {chosen['held_out']['spearman']})")
    by_mass = None
    if lesion_head:
        def mass_scores(floor: float, mass: float, members: set[str]) -> dict:
            entries = {name: {"points": [], "count": int(round(masses[name][floor] / mass))} for name in members}
            scores = score_acne(entries, circles, breakdown=False)
            return {"count_mae": scores["count_mae"], "spearman": scores["spearman"]}

        mass_table = [{"floor": floor, "mass": mass, **{half: mass_scores(floor, mass, members)
                                                        for half, members in halves.items()}}
                      for floor in MASS_FLOORS for mass in MASSES]
        by_mass = min(mass_table, key=lambda r: r["calibration"]["count_mae"])
        print(f"\nheatmap-mass count chosen on the calibration half (least count MAE): floor {by_mass['floor']}, "
              f"mass {by_mass['mass']} per lesion")
        print(f"held out: count MAE {by_mass['held_out']['count_mae']}, Spearman {by_mass['held_out']['spearman']}")
    if args.json:
        args.json.write_text(json.dumps({"count_mass": by_mass,"weights": args.weights, "max_fp": args.max_fp, "chosen": chosen["threshold"],
                                         "count_threshold": best_count["count_threshold"] if counting else None,
                                         "counting": counting,
                                         "rule": rule, "lesion_head": lesion_head,
                                         "lesions_on_skin": round(reachable, 4),
                                         "split": "sorted file names: even positions calibrate, odd are held out",
                                         "table": table}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
