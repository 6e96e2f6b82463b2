"""Model cards and Hub-ready folders for trained runs (`glowai weights push`)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd

from core.errors import GlowAIError

CARD = """---
{front_licence}
library_name: segmentation-models-pytorch
tags: [image-segmentation, skin, cosmetics, glowai]
---

# {name}

A U-Net ({encoder} encoder) that segments four cosmetic skin conditions, pixel by pixel, on a
face crop: {classes}.{head} Made for GlowAI (facial skin analysis and beauty-filter preview).

**It describes cosmetic features in photos. It is not a medical device and must not be used
to diagnose any condition.**

Licence of these weights: **{license}**.{licence_note}

## Use

```python
from core.segmentation import Segmenter, SegmenterOptions
segmenter = Segmenter(SegmenterOptions(weights="{name}"))   # or a path to model.safetensors
result = segmenter.segment(rgb_uint8_image, skin_mask)      # probabilities + label map{lesions_use}
```

Input: RGB face crop, long side {input_size} px, normalised with mean {mean} and std {std}.
Outputs: classes (pixel values) {class_list}{head_output}.

## Training

{data}
- Command: `{command}`
- Best validation epoch: {best_epoch} of {epochs} (validation: held-out identities{real_val})

## Metrics

{metrics}

## Limits

{limits}
"""

SYNTH_LIMITS = """- Trained only on synthetic blemishes (procedural rendering on CC0 portraits); real acne,
  redness, texture and dryness look more varied than the training data.
- Skin tone: per-tone IoU is reported above; photo-based tone estimates depend on lighting.
- Photos of faces at other scales than a face crop (close-ups, side views) are harder."""

REAL_LIMITS = """- Acne lesions are learned from ACNE04 clinical photos (Chinese patients, mostly light and
  intermediate skin, side and oblique views, clinic lighting); selfies of other people, darker
  skin and phone lighting are further from that data. Some people of the dev split also appear in
  the training split, so the dev figures above flatter the model a little.
- Redness, texture and dryness are still learned from synthetic blemishes only: no real photo has a
  label for them, so their real-photo quality is judged by eye, not measured.
- The lesion head finds centres, not outlines: the acne area is the heatmap blob around each centre,
  so the synthetic acne IoU above (blob against painted papule) is low by design; lesion recall and
  counts are the acne figures that matter.
- ACNE04-v2 circles cover only 14 of the 102 most severe training photos: very severe acne is
  under-represented and its counts run low.
- The marked lesions are the confident peaks (few false ones, many missed); the count is estimated
  from the whole heatmap (its mass above a floor, or its faint peaks too), so it says how many
  lesions there are rather than tallying the marked ones: close on average, off by about ten on a
  single photo (count MAE above), and low on very severe acne."""

ACNE04_NOTE = (" The acne lesions were learned from the ACNE04 photos and their ACNE04-v2 expert lesion "
               "marks, which are for research use only: these weights are for research and non-commercial "
               "use under the ACNE04 terms (cite Wu et al., ICCV 2019, and Gazeau et al., MICCAI 2024). "
               "`glowai-unet-small` (synthetic data only) is the Apache-2.0 alternative.")


def _metrics_markdown(run: Path) -> str:
    parts = []
    csv = run / "metrics.csv"
    if csv.is_file():
        table = pd.read_csv(csv)
        best = table.loc[_best_row(table)]
        per_class = ", ".join(f"{c[4:]} {best[c]:.3f}" for c in table.columns if c.startswith("iou_"))
        lesion = (f"; lesion F1 {best['val_lesion_f1']:.3f} (recall {best['val_lesion_recall']:.3f}) on held-out "
                  "training photos" if "val_lesion_f1" in table else "")
        parts.append(f"- Training-time validation (subset): mIoU {best['val_miou']:.3f} ({per_class}){lesion}")
    for name, title in (("eval-segmentation.json", "Synthetic validation set"),
                        ("eval-segmentation-v1.json", "Synthetic validation set, glowai-unet-small (v1) on the same set"),
                        ("eval-acne.json", "ACNE04 dev photos"),
                        ("eval-acne-baseline.json", "ACNE04, classical red-spot baseline"),
                        ("eval-segmentation-onnx-int8.json", "Synthetic validation set on the int8 CPU runtime "
                         "(`glowai eval segmentation --runtime onnx-int8`)"),
                        ("eval-acne-onnx-int8.json", "ACNE04 dev photos on the int8 CPU runtime "
                         "(`glowai eval acne --runtime onnx-int8`)")):
        path = run / name
        if path.is_file():
            result = json.loads(path.read_text())
            keys = ("miou", "per_class", "per_tone", "per_tone_spread", "recall", "precision", "fp_per_image",
                    "count_mae", "spearman", "whole_frame", "count", "photos")
            shown = {k: result[k] for k in keys if k in result and not (k == "per_tone" and "recall" in result)}
            parts.append(f"- {title} (`{name}`): `{json.dumps(shown)}`")
    acne = {title: json.loads((run / name).read_text()) for name, title in ACNE_FILES if (run / name).is_file()}
    if acne:
        parts.append("\n" + acne_tables(acne))
    calibration = run / "calibration-acne.json"
    if calibration.is_file():
        result = json.loads(calibration.read_text())
        rows = {row["threshold"]: row for row in result["table"]}
        chosen = rows.get(result["chosen"])
        if chosen is not None:
            held = {k: chosen["held_out"][k] for k in ("recall", "precision", "fp_per_image", "spearman")}
            what = "Lesion-head peak threshold" if result.get("lesion_head") else "Acne decision threshold"
            parts.append(f"- {what} (`calibration-acne.json`, `scripts/calibrate_acne.py`): "
                         f"{result['chosen'] or 'argmax'}, chosen on half of the ACNE04 photos "
                         f"({result.get('rule', 'the most recall at FP/photo <= ' + str(result['max_fp']))}); "
                         f"on the other half: "
                         f"`{json.dumps(held)}`")
        counting = {row["count_threshold"]: row for row in result.get("counting") or []}.get(result.get("count_threshold"))
        if counting is not None and chosen is not None:
            parts.append(f"- Count threshold (the same file): {result['count_threshold']}, faint peaks from it up are "
                         "counted too; chosen on the same half (least count MAE); on the other half: "
                         f"`{json.dumps(counting['held_out'])}` (the marked peaks alone: count MAE "
                         f"{chosen['held_out']['count_mae']}, Spearman {chosen['held_out']['spearman']})")
        by_mass = result.get("count_mass")
        if by_mass is not None:
            parts.append(f"- Heatmap-mass count (the same file): floor {by_mass['floor']}, {by_mass['mass']} per lesion, "
                         "chosen on the same half (least count MAE); on the other half: "
                         f"`{json.dumps(by_mass['held_out'])}`")
    conditions = run / "calibration-conditions.json"
    if conditions.is_file():
        result = json.loads(conditions.read_text())
        held = result["table"]["held_out"]
        parts.append(f"- Condition decision thresholds (`calibration-conditions.json`, `scripts/calibrate_conditions.py`): "
                     f"`{json.dumps(result['thresholds'])}` (a condition is labelled only where its probability "
                     f"reaches its threshold), chosen on half of the synthetic validation identities; on the other "
                     f"half, IoU argmax `{json.dumps(held['argmax']['per_class'])}` -> with the thresholds "
                     f"`{json.dumps(held['thresholds']['per_class'])}`")
    return "\n".join(parts) or "- (no evaluation found in the run folder)"


ACNE_FILES = (("eval-acne.json", "this model"), ("eval-acne-v1.json", "glowai-unet-small (v1)"),
              ("eval-acne-baseline.json", "red-spot baseline"))
ACNE_COLUMNS = (("recall", "recall"), ("precision", "precision"), ("fp_per_image", "FP/photo"),
                ("count_mae", "count MAE"), ("spearman", "Spearman(count, grade)"))


def acne_tables(results: dict[str, dict]) -> str:
    """Markdown tables of `glowai eval acne` results by title: overall, per grade, per skin tone."""
    def table(rows: list[tuple[str, dict]], first: str) -> str:
        lines = [f"| {first} | " + " | ".join(title for _, title in ACNE_COLUMNS) + " | photos |",
                 "|---" * (len(ACNE_COLUMNS) + 2) + "|"]
        for label, scores in rows:
            cells = ["-" if scores.get(key) is None else f"{scores[key]:g}" for key, _ in ACNE_COLUMNS]
            lines.append(f"| {label} | " + " | ".join(cells) + f" | {scores.get('annotated', '-')} |")
        return "\n".join(lines)

    out = ["ACNE04 dev photos (`glowai eval acne --data ../shared/data/acne04-dev`; scored against the "
           "ACNE04-v2 expert circles):", "", table(list(results.items()), "model")]
    for part, title in (("per_grade", "grade"), ("per_tone", "skin tone")):
        rows = [(f"{name}: {key}", scores) for name, result in results.items()
                for key, scores in result.get(part, {}).items()]
        if rows:
            out += ["", f"Per {title}:", "", table(rows, f"model: {title}")]
    return "\n".join(out)


def write_card(run: Path, target: Path, lesion_threshold: float | None = None,
               count_threshold: float | None = None, count_mass: tuple[float, float] | None = None) -> None:
    """Write a model card for the run in `run` (config.json, metrics.csv, eval-*.json) to `target`.
    `count_mass`: (floor, mass) when the report counts lesions by heatmap mass."""
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
        best_epoch = int(table.loc[_best_row(table), "epoch"])
    command = (f"glowai train --data {config['data']} --out {config['out']} --encoder {config['encoder']} "
               f"--decoder-channels {','.join(map(str, config['decoder_channels']))} --epochs {config['epochs']} "
               f"--batch {config['batch']} --lr {config['lr']} --loss {config['loss']} "
               f"--class-weight {config.get('class_weight', 1.0)} --patch {config['patch']} "
               f"--name {config['name']}" + (f" --init {config['init']}" if config.get("init") else ""))
    if config.get("patches_per_image", 1) != 1:
        command += f" --patches-per-image {config['patches_per_image']}"
    if config.get("device", "cpu") != "cpu":
        command += f" --device {config['device']}"
    if config.get("workers"):
        command += f" --workers {config['workers']}"
    real = config.get("real")
    if real:
        command += (f" --real {real} --real-share {config['real_share']} --real-val {config['real_val']} "
                    f"--lesion-head --lesion-weight {config.get('lesion_weight', 1.0)} --license '{config['license']}'"
                    + ("" if config.get("synth_lesions", True) else " --no-synth-lesions"))
    data = f"- Synthetic data: {config['data']} (procedural blemishes on CC0 portraits, split by identity)"
    if real:
        data += (f"\n- Real data: {real} (the ACNE04 training split: the photos with ACNE04-v2 expert lesion "
                 "circles teach the lesion-centre head; never the dev photos)")
    apache = spec.license.lower() == "apache-2.0"
    threshold = lesion_threshold if lesion_threshold is not None else spec.lesion_threshold
    counted = count_threshold if count_threshold is not None else spec.lesion_count_threshold
    counting = (f"; the report also counts the faint ones, local maxima >= {counted}, which match the expert counts "
                "best (scripts/calibrate_acne.py)" if counted is not None and counted < threshold else "")
    if count_mass is None and spec.lesion_count_mass:
        count_mass = (spec.lesion_count_floor or 0.0, spec.lesion_count_mass)
    if count_mass is not None:
        counting = (f"; the report counts lesions from the heatmap's mass: the heat above {count_mass[0]} on skin, "
                    f"summed at the network's input scale, over {count_mass[1]} per lesion (scripts/calibrate_acne.py)")
    target.write_text(CARD.format(
        front_licence="license: apache-2.0" if apache else "license: other\nlicense_name: acne04-research-only",
        license=spec.license, licence_note="" if apache or not real else ACNE04_NOTE,
        name=spec.name, encoder=spec.encoder, classes=", ".join(spec.classes[1:]),
        head=(" A second output, a lesion-centre heatmap, finds acne lesions one by one (peak picking), so the "
              "report counts them." if spec.lesion_head else ""),
        lesions_use=("\nresult.lesions                                              # acne centres x, y, score"
                     if spec.lesion_head else ""),
        head_output=(f"; channel {len(spec.classes)}: lesion-centre heatmap logits (sigmoid; lesions are its "
                     f"local maxima >= {threshold}{counting})" if spec.lesion_head else ""),
        input_size=spec.input_size, mean=list(spec.mean), std=list(spec.std),
        class_list=", ".join(f"{i} {c}" for i, c in enumerate(spec.classes)), data=data, command=command,
        best_epoch=best_epoch, epochs=config["epochs"],
        real_val=f"; lesion F1 on {config['real_val']} held-out training photos" if real else "",
        metrics=_metrics_markdown(run), limits=REAL_LIMITS if real else SYNTH_LIMITS), encoding="utf-8")


def _best_row(table: pd.DataFrame):
    """The epoch `glowai train` kept: best val mIoU, plus lesion F1 where the run measured it."""
    score = table["val_miou"] + (table["val_lesion_f1"].fillna(0) if "val_lesion_f1" in table else 0)
    return score.idxmax()


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
