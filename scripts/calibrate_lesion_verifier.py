"""Calibrate a model's lesion verifier on real photos: the marking threshold and the count.

The model's registry entry names its verifier (`lesion_verifier`: file, sha256, floor). Every
ACNE04 photo is analysed once through the real pipeline; each heatmap peak from the floor up on
the analysed skin is a candidate with its heat h and the verifier's probability p. The photos are
split by sorted name (even positions calibrate, odd are held out, as scripts/calibrate_acne.py):

- marking: a candidate is a lesion where sqrt(h * p) reaches the threshold; the threshold with the
  most recall at <= --max-fp false positives per photo on the calibration half. The same table for
  the heat alone (the model without its verifier) is printed beside it.
- count: heat mass above the registry's floor over `mass` plus count_scale * sum(p**2); the pair
  with the least count MAE on the calibration half among those whose Spearman(count, grade) there
  is at most --spearman-slack below that of the best mass-only count (the count must keep ranking
  photos by how much acne they show, not only get closer on average).

    .venv/bin/python scripts/calibrate_lesion_verifier.py --data ../shared/data/acne04-dev \
        --weights glowai-seg-v2 --json runs/verifier/calibration.json [--registry]

--registry writes lesion_threshold, lesion_count_mass and the verifier's floor and count_scale
into the entry; rerun `glowai eval acne` for the card's figures afterwards.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.lesion_verifier import combined_score  # noqa: E402
from core.lesions import lesion_density  # noqa: E402
from core.model.evaluate import _lesions, acne_analyses, choose_by_recall, dev_halves, score_acne, score_marked  # noqa: E402

THRESHOLDS = tuple(round(t, 3) for t in np.arange(0.25, 0.7001, 0.005))  # the FP rate moves ~0.3 a photo per 0.01
HEAT_THRESHOLDS = tuple(round(t, 3) for t in np.arange(0.2, 0.601, 0.01))
MASSES = (*(round(m, 1) for m in np.arange(8.0, 40.01, 1.0)), float("inf"))
SCALES = tuple(round(c, 2) for c in np.arange(0.0, 2.51, 0.05))


def main(argv: list[str] | None = None) -> int:
    from weights import lookup

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, type=Path, help="ACNE04-like folder (images/ + acne04v2_lesions.json)")
    parser.add_argument("--weights", default=None, help="registry name of a model with a lesion_verifier (default: shipped)")
    parser.add_argument("--runtime", default="auto")
    parser.add_argument("--max-fp", type=float, default=2.5)
    parser.add_argument("--spearman-slack", type=float, default=0.05)
    parser.add_argument("--floor", type=float, default=None,
                        help="candidates from this heat up (>= the entry's floor; fewer candidates, less time); "
                             "default: the entry's floor. --registry writes it too")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--registry", action="store_true", help="write the chosen values into the registry entry")
    args = parser.parse_args(argv)
    spec = lookup(args.weights)
    if not spec.lesion_verifier:
        parser.error(f"{spec.name} has no lesion_verifier in its registry entry")
    floor = spec.lesion_count_floor or 0.0
    candidate_floor = float(spec.lesion_verifier["floor"]) if args.floor is None else args.floor
    if candidate_floor < float(spec.lesion_verifier["floor"]):
        parser.error(f"--floor {candidate_floor} is below the entry's floor {spec.lesion_verifier['floor']}: "
                     "lower the entry's floor first")

    circles = _lesions(args.data)
    photos = {}  # name -> (scale, candidates (N, 4) x, y, heat, p in analysed pixels, heat mass in network pixels)
    for path, analysis in acne_analyses(args.data, spec.name, keep_lesion_heat=True, runtime=args.runtime):
        seg = analysis.segmentation
        mass = float(lesion_density(seg.lesion_heat, analysis.regions.skin, floor, 1.0, seg.input_scale).sum())
        candidates = seg.lesion_candidates if seg.lesion_candidates is not None else np.zeros((0, 4), np.float32)
        candidates = candidates[candidates[:, 2] >= candidate_floor]
        photos[path.name] = (analysis.scale, candidates, mass)
    names = sorted(photos)
    halves = dev_halves(names)

    def sweep(values: dict[str, np.ndarray], grid: tuple, label: str) -> tuple[list, dict]:
        print(f"\n{label}\n{'threshold':>9} | {'half':<11} | recall  precision  FP/photo")
        table = []
        for threshold in grid:
            row = {"threshold": threshold, **{half: score_marked(photos, values, threshold, members, circles)
                                              for half, members in halves.items()}}
            for half in halves:
                m = row[half]
                print(f"{threshold:>9} | {half:<11} | {m['recall']:.3f}   {m['precision'] or 0:.3f}      {m['fp_per_image']:>6.2f}")
            table.append(row)
        chosen, _ = choose_by_recall(table, args.max_fp)
        print(f"chosen on the calibration half: {chosen['threshold']}; held out: recall {chosen['held_out']['recall']}, "
              f"FP/photo {chosen['held_out']['fp_per_image']}; all: recall {chosen['all']['recall']}, "
              f"FP/photo {chosen['all']['fp_per_image']}")
        return table, chosen

    heat_only = {name: photos[name][1][:, 2] for name in names}
    verified = {name: combined_score(photos[name][1][:, 2], photos[name][1][:, 3]) for name in names}
    heat_table, heat_chosen = sweep(heat_only, HEAT_THRESHOLDS, "heat alone (no verifier)")
    table, chosen = sweep(verified, THRESHOLDS, "with the verifier: sqrt(heat * p)")

    squares = {name: float((photos[name][1][:, 3] ** 2).sum()) for name in names}

    def counting(mass: float, scale: float, members: set[str]) -> dict:
        entries = {name: {"points": [], "count": int(round(photos[name][2] / mass + scale * squares[name]))}
                   for name in members}
        scores = score_acne(entries, circles, breakdown=False)
        return {"count_mae": scores["count_mae"], "spearman": scores["spearman"]}

    grid = [{"mass": mass, "scale": scale, **{half: counting(mass, scale, members) for half, members in halves.items()}}
            for mass in MASSES for scale in SCALES if not (mass == float("inf") and scale == 0)]
    mass_only = min((r for r in grid if r["scale"] == 0), key=lambda r: r["calibration"]["count_mae"])
    base = mass_only["calibration"]["spearman"]  # None where the half's grades or counts do not vary

    def keeps_ranking(row: dict) -> bool:
        rho = row["calibration"]["spearman"]
        return base is None or (rho is not None and rho >= base - args.spearman_slack)

    count = min((r for r in grid if keeps_ranking(r)), key=lambda r: r["calibration"]["count_mae"])
    for label, row in (("mass only", mass_only), ("chosen", count)):
        print(f"count, {label}: mass {row['mass']}, count_scale {row['scale']}: "
              + "; ".join(f"{half} MAE {row[half]['count_mae']} Spearman {row[half]['spearman']}" for half in halves))

    result = {"weights": spec.name, "max_fp": args.max_fp, "floor": candidate_floor, "lesion_threshold": chosen["threshold"],
              "heat_threshold": heat_chosen["threshold"],
              "lesion_count_mass": None if count["mass"] == float("inf") else count["mass"],  # None: no mass term
              "count_scale": count["scale"], "spearman_slack": args.spearman_slack,
              "split": "sorted file names: even positions calibrate, odd are held out",
              "chosen": chosen, "heat_chosen": heat_chosen, "count": count, "count_mass_only": mass_only,
              "table": table, "heat_table": heat_table}
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1, default=float))
    if args.registry:
        from weights import REGISTRY_FILE

        registry = json.loads(REGISTRY_FILE.read_text())
        entry = next(e for e in registry["models"] if e["name"] == spec.name)
        entry["lesion_threshold"] = chosen["threshold"]
        entry["lesion_count_mass"] = result["lesion_count_mass"]
        entry["lesion_verifier"] = {**entry["lesion_verifier"], "floor": candidate_floor, "count_scale": count["scale"]}
        REGISTRY_FILE.write_text(json.dumps(registry, indent=2) + "\n")
        print(f"wrote {spec.name}'s lesion_threshold, lesion_count_mass and count_scale into {REGISTRY_FILE}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
