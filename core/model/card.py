"""Model cards and Hub-ready folders for trained runs (`glowai weights push`)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd

from core.errors import GlowAIError

CARD = """---
license: {license}
library_name: segmentation-models-pytorch
tags: [image-segmentation, skin, cosmetics, glowai]
---

# {name}

A U-Net ({encoder} encoder) that segments four cosmetic skin conditions, pixel by pixel, on a
face crop: {classes}. Made for GlowAI (facial skin analysis and beauty-filter preview).

**It describes cosmetic features in photos. It is not a medical device and must not be used
to diagnose any condition.**

## Use

```python
from core.segmentation import Segmenter, SegmenterOptions
segmenter = Segmenter(SegmenterOptions(weights="{name}"))   # or a path to model.safetensors
result = segmenter.segment(rgb_uint8_image, skin_mask)      # probabilities + label map
```

Input: RGB face crop, long side {input_size} px, normalised with mean {mean} and std {std}.
Classes (pixel values): {class_list}.

## Training

- Data: {data}
- Command: `{command}`
- Best validation epoch: {best_epoch} of {epochs} (validation: held-out identities)

## Metrics

{metrics}

## Limits

- Trained only on synthetic blemishes (procedural rendering on CC0 portraits); real acne,
  redness, texture and dryness look more varied than the training data.
- Skin tone: per-tone IoU is reported above; photo-based tone estimates depend on lighting.
- Photos of faces at other scales than a face crop (close-ups, side views) are harder.
"""


def _metrics_markdown(run: Path) -> str:
    parts = []
    csv = run / "metrics.csv"
    if csv.is_file():
        table = pd.read_csv(csv)
        best = table.loc[table["val_miou"].idxmax()]
        per_class = ", ".join(f"{c[4:]} {best[c]:.3f}" for c in table.columns if c.startswith("iou_"))
        parts.append(f"- Training-time validation (subset): mIoU {best['val_miou']:.3f} ({per_class})")
    for name, title in (("eval-segmentation.json", "Synthetic validation set"), ("eval-acne.json", "ACNE04 dev photos"),
                        ("eval-acne-baseline.json", "ACNE04, classical red-spot baseline")):
        path = run / name
        if path.is_file():
            result = json.loads(path.read_text())
            keys = ("miou", "per_class", "per_tone", "per_tone_spread", "recall", "precision", "fp_per_image",
                    "count_mae", "spearman", "whole_frame", "count", "photos")
            shown = {k: result[k] for k in keys if k in result}
            parts.append(f"- {title} (`{name}`): `{json.dumps(shown)}`")
    calibration = run / "calibration-acne.json"
    if calibration.is_file():
        result = json.loads(calibration.read_text())
        rows = {row["threshold"]: row for row in result["table"]}
        chosen = rows.get(result["chosen"])
        if chosen is not None:
            held = {k: chosen["held_out"][k] for k in ("recall", "precision", "fp_per_image", "spearman")}
            parts.append(f"- Acne decision threshold (`calibration-acne.json`, `scripts/calibrate_acne.py`): "
                         f"{result['chosen'] or 'argmax'}, chosen on half of the ACNE04 photos "
                         f"({result.get('rule', 'the most recall at FP/photo <= ' + str(result['max_fp']))}); "
                         f"on the other half: "
                         f"`{json.dumps(held)}`")
    return "\n".join(parts) or "- (no evaluation found in the run folder)"


def write_card(run: Path, target: Path) -> None:
    """Write a model card for the run in `run` (config.json, metrics.csv, eval-*.json) to `target`."""
    run = Path(run)
    config_path = run / "config.json"
    if not config_path.is_file():
        raise GlowAIError(f"{run}: no config.json; pass a folder made by `glowai train`")
    config = json.loads(config_path.read_text())
    from weights import spec_from_file

    spec = spec_from_file(run / "best.safetensors")
    best_epoch = "?"
    if (run / "metrics.csv").is_file():
        table = pd.read_csv(run / "metrics.csv")
        best_epoch = int(table.loc[table["val_miou"].idxmax(), "epoch"])
    command = (f"glowai train --data {config['data']} --out {config['out']} --encoder {config['encoder']} "
               f"--decoder-channels {','.join(map(str, config['decoder_channels']))} --epochs {config['epochs']} "
               f"--batch {config['batch']} --lr {config['lr']} --loss {config['loss']} "
               f"--class-weight {config.get('class_weight', 1.0)} --patch {config['patch']} "
               f"--name {config['name']}" + (f" --init {config['init']}" if config.get("init") else ""))
    target.write_text(CARD.format(
        license=spec.license.lower(), name=spec.name, encoder=spec.encoder, classes=", ".join(spec.classes[1:]),
        input_size=spec.input_size, mean=list(spec.mean), std=list(spec.std),
        class_list=", ".join(f"{i} {c}" for i, c in enumerate(spec.classes)), data=config["data"], command=command,
        best_epoch=best_epoch, epochs=config["epochs"], metrics=_metrics_markdown(run)), encoding="utf-8")


def hub_folder(run: Path, out: Path) -> Path:
    """A folder ready for the Hub: model.safetensors, README.md (the card), config.json, metrics."""
    run, out = Path(run), Path(out)
    best = run / "best.safetensors"
    if not best.is_file():
        raise GlowAIError(f"{run}: no best.safetensors; train first (`glowai train`)")
    out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(best, out / "model.safetensors")
    shutil.copyfile(run / "config.json", out / "config.json")
    for name in ("metrics.csv", "metrics.png", "eval-segmentation.json", "eval-acne.json"):
        if (run / name).is_file():
            shutil.copyfile(run / name, out / name)
    write_card(run, out / "README.md")
    return out


def push(run: Path, repo: str, out: Path | None = None) -> tuple[Path, bool]:
    """Write the Hub folder, then upload it when the network is allowed. Returns (folder, uploaded)."""
    from weights import network_allowed

    folder = hub_folder(run, out or Path(run) / "hub")
    if not network_allowed():
        return folder, False
    from huggingface_hub import HfApi

    api = HfApi()
    api.create_repo(repo, exist_ok=True)
    api.upload_folder(repo_id=repo, folder_path=str(folder), commit_message="GlowAI model from glowai weights push")
    return folder, True
