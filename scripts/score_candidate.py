"""Judge a trained checkpoint on real photos exactly as the shipped model is judged, then clean up.

The checkpoint (a run's best.safetensors, e.g. runs/gpu/ after scripts/gpu_stage.py join) is
registered under a temporary name as a copy of glowai-seg-v2's registry entry (its verifier,
thresholds, count and CPU runtime: int8, made by `glowai weights prepare`), and
scripts/calibrate_lesion_verifier.py then chooses its marking threshold on the even half of the
photos and scores the odd half, beside the same for the shipped model (--baseline). The registry
and weights/ are restored afterwards unless --keep (also after an error or Ctrl+C; a process killed
outright leaves the entry: `git checkout weights/registry.json` and delete weights/NAME.safetensors).

    .venv/bin/python scripts/score_candidate.py runs/gpu/best.safetensors --data ../shared/data/acne04-dev

A candidate that finds more lesions still has to be shipped (scripts/ship_model.py), its verifier
retrained and its synthetic IoU checked (`glowai eval`) before it replaces the default.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import weights  # noqa: E402

BASE = "glowai-seg-v2"


def register(checkpoint: Path, name: str) -> Path:
    """weights/NAME.safetensors (fp16, as shipped) + a registry entry copied from BASE."""
    spec = weights.spec_from_file(checkpoint)
    tensors, _ = weights.load_state_dict(checkpoint)
    half = {k: (v.half() if v.is_floating_point() else v) for k, v in tensors.items()}
    target = weights.WEIGHTS_DIR / f"{name}.safetensors"
    weights.save_checkpoint(half, target, spec)
    registry = json.loads(weights.REGISTRY_FILE.read_text())
    base = next(e for e in registry["models"] if e["name"] == BASE)
    registry["models"] = [e for e in registry["models"] if e["name"] != name]
    registry["models"].append({**json.loads(json.dumps(base)), "name": name, "default": False, "file": target.name,
                               "sha256": weights.sha256_file(target)})
    weights.REGISTRY_FILE.write_text(json.dumps(registry, indent=2) + "\n")
    return target


def calibrate(name: str, data: Path, floor: float, log: Path) -> dict:
    """scripts/calibrate_lesion_verifier.py's result for `name` on `data` (its output kept in `log`)."""
    result = log.with_suffix(".json")
    command = [sys.executable, str(ROOT / "scripts" / "calibrate_lesion_verifier.py"), "--data", str(data),
               "--weights", name, "--floor", str(floor), "--json", str(result)]
    with log.open("w") as handle:
        subprocess.run(command, cwd=ROOT, stdout=handle, stderr=subprocess.STDOUT, check=True)
    return json.loads(result.read_text())


def summary(result: dict) -> str:
    """One line: held-out and all-photo recall at the FP rate of the chosen thresholds, and the count."""
    def part(chosen: dict) -> str:
        held, every = chosen["held_out"], chosen["all"]
        return (f"threshold {chosen['threshold']}: held out {held['recall']:.3f} at {held['fp_per_image']:.2f} FP/photo "
                f"(all {every['recall']:.3f} at {every['fp_per_image']:.2f})")

    count = result["count"]["held_out"]
    return (f"with the verifier {part(result['chosen'])}; heat alone {part(result['heat_chosen'])}; "
            f"count held out MAE {count['count_mae']:.2f}, Spearman {count['spearman']:.3f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "acne04-dev")
    parser.add_argument("--name", default="glowai-seg-candidate")
    parser.add_argument("--floor", type=float, default=0.2, help="candidates from this heat up (the shipped floor)")
    parser.add_argument("--out", type=Path, help="folder for the logs (default: beside the checkpoint)")
    parser.add_argument("--baseline", action="store_true", help=f"also calibrate {BASE} the same way")
    parser.add_argument("--keep", action="store_true", help="leave the candidate registered")
    args = parser.parse_args()
    if not args.checkpoint.is_file():
        print(f"error: {args.checkpoint}: no such checkpoint", file=sys.stderr)
        return 1
    shipped = {e["name"] for e in json.loads(weights.REGISTRY_FILE.read_text())["models"]}
    if args.name in shipped:
        print(f"error: --name {args.name} is a registered model; choose another", file=sys.stderr)
        return 1
    out = args.out or args.checkpoint.parent
    out.mkdir(parents=True, exist_ok=True)
    registry_before = weights.REGISTRY_FILE.read_bytes()
    target = weights.WEIGHTS_DIR / f"{args.name}.safetensors"
    try:
        register(args.checkpoint, args.name)
        subprocess.run([sys.executable, "-m", "apps.cli", "weights", "prepare", "--weights", args.name], cwd=ROOT,
                       check=True, stdout=subprocess.DEVNULL)
        results = {args.name: calibrate(args.name, args.data, args.floor, out / f"score-{args.name}.log")}
        if args.baseline:
            results[BASE] = calibrate(BASE, args.data, args.floor, out / f"score-{BASE}.log")
    finally:
        if not args.keep:
            weights.REGISTRY_FILE.write_bytes(registry_before)
            target.unlink(missing_ok=True)
    for name, result in results.items():
        print(f"{name}: {summary(result)}")
    print(f"logs in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
