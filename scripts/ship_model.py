"""Ship a trained run as the embedded default model: weights/<name>.safetensors (fp16) + card + registry.

Run: .venv/bin/python scripts/ship_model.py RUN [--name glowai-seg-v2] [--lesion-threshold T]
RUN holds best.safetensors, config.json, metrics.csv and, when made, eval-segmentation.json,
eval-acne.json, eval-acne-baseline.json and calibration-acne.json (their figures go into the
card). The shipped model becomes the registry's default for its task; a name not yet in the
registry gets a new entry, and every other model stays available by name.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import weights  # noqa: E402
from core.model.card import write_card  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run")
    parser.add_argument("--name", default="glowai-seg-v2")
    parser.add_argument("--acne-threshold", type=float, help="calibrated acne decision threshold "
                        "(scripts/calibrate_acne.py); without it the label map is the plain argmax")
    parser.add_argument("--condition-thresholds", type=Path, help="scripts/calibrate_conditions.py's JSON: "
                        "redness/texture/dryness decision thresholds (copied into RUN for the card)")
    parser.add_argument("--lesion-threshold", type=float, help="calibrated lesion-head peak threshold "
                        "(scripts/calibrate_acne.py on a lesion-head model)")
    parser.add_argument("--lesion-count-threshold", type=float, help="calibrated peak value from which faint "
                        "lesions are counted too (scripts/calibrate_acne.py's count threshold)")
    parser.add_argument("--lesion-count-floor", type=float, help="heatmap-mass count: heat above this value "
                        "counts (scripts/calibrate_acne.py's floor; with --lesion-count-mass)")
    parser.add_argument("--lesion-count-mass", type=float, help="heatmap-mass count: the mass of one lesion "
                        "(scripts/calibrate_acne.py); the report's counts then come from the heatmap's mass")
    parser.add_argument("--cpu-runtime", choices=("onnx-int8", "onnx", "torch-bf16"),
                        help="the CPU runtime `auto` picks for this model; give it only after its figures "
                             "(glowai eval acne/segmentation --runtime R) held against the reference")
    args = parser.parse_args()
    if (args.lesion_count_floor is None) != (args.lesion_count_mass is None):
        parser.error("--lesion-count-floor and --lesion-count-mass go together")
    run = Path(args.run)
    spec = weights.spec_from_file(run / "best.safetensors")
    tensors, _ = weights.load_state_dict(run / "best.safetensors")
    half = {k: (v.half() if v.is_floating_point() else v) for k, v in tensors.items()}  # halves the repo size
    target = weights.WEIGHTS_DIR / f"{args.name}.safetensors"
    thresholds = {"acne": args.acne_threshold} if args.acne_threshold is not None else {}
    if args.condition_thresholds:
        calibration = json.loads(args.condition_thresholds.read_text())
        thresholds.update(calibration["thresholds"])
        if args.condition_thresholds.resolve() != (run / "calibration-conditions.json").resolve():
            (run / "calibration-conditions.json").write_text(json.dumps(calibration, indent=1))
    thresholds = thresholds or None
    data = "synthetic data and ACNE04 lesion marks" if spec.lesion_head else "CC0 portraits with procedural blemishes"
    description = (f"Embedded default: U-Net trained by this project on {data} "
                   f"(see weights/{args.name}.md).")
    lesion_threshold = args.lesion_threshold if args.lesion_threshold is not None else spec.lesion_threshold
    shipped = weights.WeightSpec(**{**spec.__dict__, "name": args.name, "file": target.name, "default": True,
                                    "thresholds": thresholds, "lesion_threshold": lesion_threshold,
                                    "lesion_count_threshold": args.lesion_count_threshold,
                                    "lesion_count_floor": args.lesion_count_floor,
                                    "lesion_count_mass": args.lesion_count_mass,
                                    "cpu_runtime": args.cpu_runtime, "description": description})
    weights.save_checkpoint(half, target, shipped)
    write_card(run, weights.WEIGHTS_DIR / f"{args.name}.md", lesion_threshold=lesion_threshold,
               count_threshold=args.lesion_count_threshold,
               count_mass=(args.lesion_count_floor, args.lesion_count_mass) if args.lesion_count_mass else None)
    registry = json.loads(weights.REGISTRY_FILE.read_text())
    entry = next((e for e in registry["models"] if e["name"] == args.name), None)
    if entry is None:
        entry = {"name": args.name, "task": spec.task}
        registry["models"].append(entry)
    for other in registry["models"]:
        if other.get("task") == spec.task:
            other["default"] = other is entry
    entry.update(arch=spec.arch, encoder=spec.encoder, arch_kwargs=spec.arch_kwargs, file=target.name,
                 sha256=weights.sha256_file(target), license=spec.license, input_size=spec.input_size,
                 mean=list(spec.mean), std=list(spec.std), classes=list(spec.classes), description=description)
    entry.pop("thresholds", None)
    if thresholds:
        entry["thresholds"] = thresholds
    for key in ("lesion_head", "lesion_threshold", "lesion_count_threshold", "lesion_count_floor", "lesion_count_mass",
                "cpu_runtime"):  # a new model earns its own cpu_runtime
        entry.pop(key, None)
    if args.cpu_runtime:
        entry["cpu_runtime"] = args.cpu_runtime
    if spec.lesion_head:
        entry.update(lesion_head=True, lesion_threshold=lesion_threshold)
        if args.lesion_count_threshold is not None:
            entry["lesion_count_threshold"] = args.lesion_count_threshold
        if args.lesion_count_mass is not None:
            entry.update(lesion_count_floor=args.lesion_count_floor, lesion_count_mass=args.lesion_count_mass)
    sharing = [e["name"] for e in registry["models"] if e is not entry and e.get("file") == target.name]
    if sharing:  # variants of the old weights (another input size, say): their calibration is not for these
        registry["models"] = [e for e in registry["models"] if e["name"] not in sharing]
        print(f"removed {', '.join(sharing)} (they ran the replaced weights): recalibrate and add them again")
    weights.REGISTRY_FILE.write_text(json.dumps(registry, indent=2) + "\n")
    print(f"shipped {target} ({target.stat().st_size / 2**20:.1f} MB), sha256 {weights.sha256_file(target)[:12]}...")


if __name__ == "__main__":
    main()
