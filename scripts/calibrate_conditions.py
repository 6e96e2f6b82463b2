"""Choose the decision thresholds of redness, texture and dryness on synthetic data, honestly.

A model labels a pixel with its likeliest class (argmax). On faces it never saw, the shipped models
are eager: they label natural pores, shine and shadow as texture, redness or dryness where the
synthetic masks mark nothing, so their IoU on held-out identities is far below that on the
training identities. A decision threshold per condition (the class is labelled only where its
probability reaches it; `core.segmentation.apply_thresholds`) trades that back.

This script segments every sample of a synthetic split once (the held-out identities, "val", by
default), keeps the probabilities, and splits the samples in two by identity (sorted identities:
even positions calibrate, odd are held out). The thresholds are chosen on the calibration half
only (coordinate ascent on the mean IoU of the three conditions, two passes over a grid, the
lowest of thresholds within 0.001 of the best) and the held-out half reports what they are worth;
the whole split is reported too. With --faces it also
prints the share of skin each condition covers on real photos with and without the thresholds
(no labels there: a look at what the choice does to a visitor's report, not a score).

    .venv/bin/python scripts/calibrate_conditions.py --data data/synth --weights glowai-seg-v2 \
        --faces ../shared/data/faces-cc0 --json runs/eval/calibration-conditions-v2.json

--registry writes the chosen values into the registry entry of --weights (a registry name) as
"thresholds"; ship_model.py --condition-thresholds takes this JSON for a newly shipped run. Then
rerun `glowai eval segmentation` for the model card.
Acne is left to scripts/calibrate_acne.py (real photos; for a lesion-head model its heatmap).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.labels import LABELS, NUM_CLASSES, label_by_name  # noqa: E402
from core.model.train import confusion, iou_from_confusion  # noqa: E402

CALIBRATED = ("redness", "texture", "dryness")
TIE = 0.001  # mean IoU differences below this are noise between neighbouring thresholds
GRID = (None, *(round(float(t), 2) for t in np.arange(0.40, 0.951, 0.05)), 0.97, 0.98, 0.99)  # None: plain argmax


def _sample_outputs(segmenter, data: Path, rows: pd.DataFrame, progress: bool) -> list[dict]:
    """Per sample: its identity, truth mask, crop probabilities, box and lesion blobs (no thresholds)."""
    acne = label_by_name("acne").index
    samples = []
    for row in tqdm(list(rows.itertuples()), desc="segment", disable=not progress):
        image = cv2.cvtColor(cv2.imread(str(data / row.image)), cv2.COLOR_BGR2RGB)
        truth = cv2.imread(str(data / row.mask), cv2.IMREAD_UNCHANGED)
        seg = segmenter.segment(image, np.ones(truth.shape, bool))
        x0, y0, x1, y1 = seg.box
        blobs = (seg.label_map[y0:y1, x0:x1] == acne) if segmenter.spec.lesion_head else None
        samples.append({"identity": str(row.identity), "truth": truth, "probs": seg.crop_probabilities,
                        "box": seg.box, "blobs": blobs})
    return samples


def _confusion(segmenter, samples: list[dict], thresholds: dict[str, float]) -> np.ndarray:
    listed = segmenter.decision_thresholds(thresholds)
    total = np.zeros((NUM_CLASSES, NUM_CLASSES), np.int64)
    for sample in samples:
        x0, y0, x1, y1 = sample["box"]
        labels = np.zeros(sample["truth"].shape, np.uint8)
        labels[y0:y1, x0:x1] = segmenter.label_crop(sample["probs"], sample["blobs"], listed)
        total += confusion(labels, sample["truth"])
    return total


def _scores(matrix: np.ndarray) -> dict:
    per_class = {k: round(v, 4) for k, v in iou_from_confusion(matrix).items()}
    return {"per_class": per_class, "mean_calibrated": round(float(np.mean([per_class[c] for c in CALIBRATED])), 4)}


def choose(segmenter, samples: list[dict], passes: int = 2, progress: bool = True) -> tuple[dict, list[dict]]:
    """Coordinate ascent over GRID for each calibrated class: (thresholds, the rows tried). Where the
    mean IoU is flat, the lowest threshold within TIE of the best is taken (the least change)."""
    chosen: dict[str, float] = {}
    tried = []
    for pass_ in range(passes):
        changed = False
        for name in CALIBRATED:
            scores = []
            for value in GRID:
                candidate = {k: v for k, v in chosen.items() if k != name} | ({} if value is None else {name: value})
                score = _scores(_confusion(segmenter, samples, candidate))["mean_calibrated"]
                tried.append({"pass": pass_ + 1, "class": name, "threshold": value, "mean_iou": score})
                scores.append((value, score, candidate))
            top = max(score for _, score, _ in scores)
            value, score, candidate = next(row for row in scores if row[1] >= top - TIE)
            changed |= chosen.get(name) != value
            chosen = candidate
            if progress:
                print(f"pass {pass_ + 1}, {name}: {value or 'argmax'} (mean IoU {score:.4f})", flush=True)
        if not changed:
            break
    return chosen, tried


def skin_shares(weights: str | None, faces: Path, thresholds: dict, progress: bool) -> dict:
    """Mean share of the analysed skin each condition covers on real photos, argmax vs thresholds."""
    from core.errors import GlowAIError
    from core.pipeline import AnalyzeOptions, Analyzer
    from core.segmentation import SegmenterOptions

    paths = sorted(p for p in faces.glob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png", ".webp"))
    analyzer = Analyzer(AnalyzeOptions(segmenter=SegmenterOptions(weights=weights, thresholds={})))
    shares = {"argmax": [], "thresholds": []}
    try:
        segmenter = analyzer.segmenter()
        listed = segmenter.decision_thresholds(thresholds)
        for path in tqdm(paths, desc="faces", disable=not progress):
            try:
                analysis = analyzer.analyze(path)
            except GlowAIError:
                continue
            seg, skin = analysis.segmentation, analysis.regions.skin
            x0, y0, x1, y1 = seg.box
            crop_skin = skin[y0:y1, x0:x1]
            blobs = seg.label_map[y0:y1, x0:x1] == label_by_name("acne").index if segmenter.spec.lesion_head else None
            area = max(1, int(skin.sum()))
            for key, listing in (("argmax", segmenter.decision_thresholds({})), ("thresholds", listed)):
                labels = segmenter.label_crop(seg.crop_probabilities, blobs, listing)
                shares[key].append([np.count_nonzero((labels == label.index) & crop_skin) / area for label in LABELS])
    finally:
        analyzer.close()
    return {key: {label.name: round(float(np.mean([row[label.index] for row in rows])), 4) for label in LABELS[1:]}
            for key, rows in shares.items() if rows} | {"photos": len(shares["argmax"])}


def write_registry_thresholds(name: str, chosen: dict[str, float]) -> None:
    """Set the condition thresholds of registry entry `name` (an acne threshold there stays)."""
    import weights
    from core.files import write_atomic

    registry = json.loads(weights.REGISTRY_FILE.read_text())
    entry = next((e for e in registry["models"] if e["name"] == name), None)
    if entry is None:
        raise SystemExit(f"{name!r} is not in {weights.REGISTRY_FILE}: --registry needs a registry name as --weights")
    kept = {k: v for k, v in (entry.get("thresholds") or {}).items() if k not in CALIBRATED}
    entry.pop("thresholds", None)
    if kept or chosen:
        entry["thresholds"] = {**kept, **chosen}
    write_atomic(weights.REGISTRY_FILE, (json.dumps(registry, indent=2) + "\n").encode())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, type=Path, help="a folder made by `glowai synth`")
    parser.add_argument("--weights", default=None, help="registry name or .safetensors path (default: shipped model)")
    parser.add_argument("--split", default="val", help="manifest split to calibrate on (default: val, held-out identities)")
    parser.add_argument("--runtime", default="auto", help="segmenter runtime (default: what this machine ships)")
    parser.add_argument("--faces", type=Path, help="real photos: print each condition's share of skin before/after")
    parser.add_argument("--json", type=Path, help="write the choice and the tables here")
    parser.add_argument("--registry", action="store_true",
                        help="write the chosen thresholds into the registry entry of --weights")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)

    from core.errors import GlowAIError
    from core.segmentation import Segmenter, SegmenterOptions

    manifest = args.data / "manifest.parquet"
    if not manifest.is_file():
        raise SystemExit(f"{args.data}: no manifest.parquet; pass a folder made by `glowai synth`")
    rows = pd.read_parquet(manifest)
    rows = rows[rows["split"] == args.split].sort_values("id")
    identities = sorted(rows["identity"].astype(str).unique())
    if len(identities) < 2:
        raise SystemExit(f"{args.data}: the {args.split!r} split needs at least two identities to calibrate honestly")
    halves = {"calibration": set(identities[0::2]), "held_out": set(identities[1::2])}
    progress = not args.quiet
    try:
        segmenter = Segmenter(SegmenterOptions(weights=args.weights, thresholds={}, runtime=args.runtime))
    except GlowAIError as err:
        raise SystemExit(str(err)) from err
    with segmenter:
        samples = _sample_outputs(segmenter, args.data, rows, progress)
        parts = {half: [s for s in samples if s["identity"] in members] for half, members in halves.items()}
        parts["all"] = samples
        chosen, tried = choose(segmenter, parts["calibration"], progress=progress)
        table = {half: {"argmax": _scores(_confusion(segmenter, part, {})),
                        "thresholds": _scores(_confusion(segmenter, part, chosen)), "samples": len(part)}
                 for half, part in parts.items()}
        model = segmenter.spec.name
    print(f"\n{model}: thresholds chosen on the calibration half ({len(parts['calibration'])} samples): "
          f"{chosen or 'none (argmax is best)'}")
    print(f"{'half':<12} {'labels':<10} " + " ".join(f"{c:>8}" for c in CALIBRATED) + "     mean")
    for half, rows_ in table.items():
        for key in ("argmax", "thresholds"):
            scores = rows_[key]
            print(f"{half:<12} {key:<10} " + " ".join(f"{scores['per_class'][c]:>8.4f}" for c in CALIBRATED)
                  + f"   {scores['mean_calibrated']:.4f}")
    shares = None
    if args.faces:
        shares = skin_shares(args.weights, args.faces, chosen, progress)
        print(f"\nshare of the analysed skin on {shares['photos']} real photos ({args.faces}):")
        for key in ("argmax", "thresholds"):
            print(f"  {key:<10} " + ", ".join(f"{c} {shares[key][c]:.1%}" for c in CALIBRATED))
    if args.registry:
        write_registry_thresholds(model, chosen)
        print(f"registry: {model} thresholds = {chosen}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({
            "model": model, "weights": args.weights, "data": str(args.data), "split": args.split,
            "rule": "coordinate ascent on the mean IoU of redness, texture and dryness, calibration half only",
            "halves": "sorted identities: even positions calibrate, odd are held out",
            "thresholds": chosen, "grid": list(GRID), "table": table, "tried": tried, "real_photo_skin_shares": shares,
        }, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
