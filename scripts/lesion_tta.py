"""Would a larger input or a mirrored second pass find more ACNE04 lesions? Recall at a fixed
false-positive budget for each network input size, with and without flip test-time augmentation.

Every photo is analysed once (face, zones, skin); then, per setting, the lesion-head model sees the
skin's crop at that input size (long side), optionally also mirrored (the two heat logits
averaged), and the heatmap peaks on the skin from the verifier's floor up become candidates that
the model's verifier scores, as `glowai analyze` does. The marking threshold of each setting is
chosen on half of the photos (even positions of the sorted names: the most recall at <= --max-fp
false positives per photo) and scored on the other half, for the heat alone and for sqrt(heat x p).
The cost of each setting is the network's pixels (and passes) against the default. With
--verifier-tta the verifier's p is the mean over the eight flips and quarter turns of each patch.

    .venv/bin/python scripts/lesion_tta.py --data ../shared/data/acne04-dev --sizes 512,640,768 --flip
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.labels import NUM_CLASSES  # noqa: E402
from core.lesion_verifier import combined_score  # noqa: E402
from core.lesions import find_lesions  # noqa: E402
from core.model.evaluate import BASELINE, _lesions, acne_analyses, choose_by_recall, dev_halves, score_marked  # noqa: E402
from core.segmentation import sigmoid  # noqa: E402

THRESHOLDS = tuple(round(t, 2) for t in np.arange(0.1, 0.9, 0.01))


def crop_heat(segmenter, image: np.ndarray, skin: np.ndarray, size: int, flip: bool) -> tuple[np.ndarray, tuple]:
    """The lesion heatmap (crop pixels) of the skin's crop seen at input long side `size`, averaged
    in logits with the mirrored input's when `flip`; and the crop box (x0, y0, x1, y1)."""
    spec = segmenter.spec
    segmenter.spec = dataclasses.replace(spec, input_size=size)
    try:
        x, box, (height, width) = segmenter._network_input(image, skin)
    finally:
        segmenter.spec = spec
    logits = segmenter._forward(x)[0, NUM_CLASSES, :height, :width]
    if flip:  # the mirrored input's padding comes back to the right and bottom when mirrored again
        mirrored = segmenter._forward(np.ascontiguousarray(x[..., ::-1]))[0, NUM_CLASSES, :, ::-1]
        logits = 0.5 * (logits + mirrored[:height, :width])
    x0, y0, x1, y1 = box
    return cv2.resize(sigmoid(logits), (x1 - x0, y1 - y0), interpolation=cv2.INTER_LINEAR), box


class DihedralMean:
    """A verifier whose probabilities are the mean over the eight flips and quarter turns of each patch."""

    def __init__(self, verifier) -> None:
        self.verifier = verifier

    def score(self, image: np.ndarray, heat: np.ndarray, points: np.ndarray, heat_origin=(0, 0)) -> np.ndarray:
        from core.lesion_verifier import cut_patches, normalise

        patches = normalise(cut_patches(image, heat, points, heat_origin=heat_origin), self.verifier.contrast)
        views = [patches, patches[..., ::-1], patches[..., ::-1, :], patches[..., ::-1, ::-1]]
        views += [np.swapaxes(view, 2, 3) for view in views]
        return np.mean([self.verifier.probabilities(np.ascontiguousarray(view)) for view in views], axis=0)


def candidates(segmenter, image: np.ndarray, skin: np.ndarray, size: int, flip: bool, floor: float) -> np.ndarray:
    """(N, 4) x, y, heat, verifier p (1 without a verifier) of the peaks on the skin from `floor` up."""
    heat, (x0, y0, x1, y1) = crop_heat(segmenter, image, skin, size, flip)
    if segmenter.verifier is None:
        _, faint, _, _ = find_lesions(heat, skin[y0:y1, x0:x1], image, (x0, y0), 2.0, floor)
        return np.column_stack([faint, np.ones(len(faint), np.float32)]).astype(np.float32)
    _, _, _, found = find_lesions(heat, skin[y0:y1, x0:x1], image, (x0, y0), 2.0, 2.0, segmenter.verifier, floor)
    return found


def best_recall(photos: dict[str, tuple[float, np.ndarray]], score, circles: dict, max_fp: float) -> dict:
    """The threshold with the most recall at <= max_fp FP/photo on the calibration half of the photos
    (`dev_halves`), with both halves' figures."""
    halves = dev_halves(photos)
    values = {name: score(found) for name, (_, found) in photos.items()}
    table = [{"threshold": threshold, **{half: score_marked(photos, values, threshold, halves[half], circles)
                                         for half in ("calibration", "held_out")}} for threshold in THRESHOLDS]
    return choose_by_recall(table, max_fp)[0]


def main(argv: list[str] | None = None) -> int:
    from core.segmentation import Segmenter, SegmenterOptions

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, type=Path, help="ACNE04-like folder (images/ + acne04v2_lesions.json)")
    parser.add_argument("--weights", default=None, help="a lesion-head model (default: shipped)")
    parser.add_argument("--runtime", default="auto")
    parser.add_argument("--sizes", default=None, help="input long sides, comma-separated (default: the model's)")
    parser.add_argument("--flip", action="store_true", help="also each size with a mirrored second pass")
    parser.add_argument("--verifier-tta", action="store_true", help="average the verifier over 8 views of each patch")
    parser.add_argument("--floor", type=float, default=None, help="candidate floor (default: the verifier's, else 0.2)")
    parser.add_argument("--max-fp", type=float, default=2.5)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)

    segmenter = Segmenter(SegmenterOptions(weights=args.weights, runtime=args.runtime))
    if not segmenter.spec.lesion_head:
        parser.error(f"{segmenter.spec.name} has no lesion head")
    if args.verifier_tta and segmenter.verifier is not None:
        segmenter.verifier = DihedralMean(segmenter.verifier)
    floor = args.floor if args.floor is not None else (segmenter.verifier_floor if segmenter.verifier else 0.2)
    default = segmenter.spec.input_size
    sizes = [int(s) for s in args.sizes.split(",")] if args.sizes else [default]
    settings = [(size, flip) for size in sizes for flip in ((False, True) if args.flip else (False,))]
    found: dict[tuple, dict] = {s: {} for s in settings}
    for path, analysis in acne_analyses(args.data, BASELINE):  # the analysis without the model: face, skin
        for size, flip in settings:
            found[(size, flip)][path.name] = (analysis.scale, candidates(segmenter, analysis.image,
                                                                        analysis.regions.skin, size, flip, floor))
    circles = _lesions(args.data)
    results = []
    print(f"\nrecall at <= {args.max_fp} FP/photo (threshold chosen on the even half, scored on the odd half)")
    print(f"{'input':>5} {'flip':>4} {'cost':>5} | {'heat alone':>22} | {'with the verifier':>22}")
    for size, flip in settings:
        cost = (size / default) ** 2 * (2 if flip else 1)
        heat = best_recall(found[(size, flip)], lambda c: c[:, 2], circles, args.max_fp)
        both = (best_recall(found[(size, flip)], lambda c: combined_score(c[:, 2], c[:, 3]), circles, args.max_fp)
                if segmenter.verifier is not None else None)
        results.append({"size": size, "flip": flip, "cost": round(cost, 2), "heat": heat, "verified": both})
        cell = ["-" if r is None else f"{r['held_out']['recall'] or 0:.3f} @ {r['held_out']['fp_per_image']:.2f} FP"
                for r in (heat, both)]
        print(f"{size:>5} {'yes' if flip else 'no':>4} {cost:>4.2f}x | {cell[0]:>22} | {cell[1]:>22}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"weights": segmenter.spec.name, "floor": floor, "max_fp": args.max_fp,
                                         "results": results}, indent=1, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
