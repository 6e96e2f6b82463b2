"""Training the blemish segmentation model on a synthetic dataset folder (see synth/dataset.py).

Recipe (the defaults): smp U-Net, ResNet-34 encoder, cross-entropy (optionally + Dice), Adam at
1e-4 with cosine decay, batch 8, best checkpoint by validation mIoU over the four conditions.
Training sees random patches at full resolution (small lesions survive) with flips, rotation
+/-15 degrees, scale 0.8-1.2, colour jitter and noise. Seeded and resumable. On CUDA it trains in
fp16 mixed precision; on CPUs with native bf16 in bf16 autocast.

A run folder holds: config.json, metrics.csv, metrics.png, best.safetensors, last.safetensors and
state.pt (optimizer, epoch, random states; loaded with weights_only=True).
"""

from __future__ import annotations

import csv
import json
import math
import os
import random
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from tqdm import tqdm

from core.errors import GlowAIError
from core.labels import LABELS, NUM_CLASSES

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class TrainConfig:
    data: str
    out: str
    encoder: str = "resnet34"
    decoder_channels: tuple[int, ...] = (256, 128, 64, 32, 16)
    epochs: int = 30
    batch: int = 8
    lr: float = 1e-4
    loss: str = "ce"  # "ce" or "ce+dice"
    class_weight: float = 1.0  # cross-entropy weight of each condition relative to background
    size: int = 512  # input size the shipped model sees at inference (the long side of the face crop)
    patch: int = 256  # training patch side, at full resolution
    patches_per_image: int = 1  # per epoch
    val_limit: int = 120  # validation images per epoch (all of them in `glowai eval segmentation`)
    seed: int = 0
    device: str = "cpu"
    pretrained: bool = False  # ImageNet encoder weights (needs the network)
    name: str = "glowai-unet"
    init: str | None = None  # start from these weights (registry name or .safetensors; same architecture)


def _load_split(data: Path, split: str, limit: int | None = None) -> tuple[list[np.ndarray], list[np.ndarray], pd.DataFrame]:
    manifest_path = data / "manifest.parquet"
    if not manifest_path.is_file():
        raise GlowAIError(f"{data}: no manifest.parquet; make a dataset with `glowai synth` first")
    manifest = pd.read_parquet(manifest_path)
    rows = manifest[manifest["split"] == split].sort_values("id")
    if limit is not None:
        rows = rows.iloc[np.linspace(0, len(rows) - 1, min(limit, len(rows))).round().astype(int)] if len(rows) else rows
    if rows.empty:
        raise GlowAIError(f"{data}: no {split} samples in the manifest")
    images = [cv2.cvtColor(cv2.imread(str(data / p)), cv2.COLOR_BGR2RGB) for p in rows["image"]]
    masks = [cv2.imread(str(data / p), cv2.IMREAD_UNCHANGED) for p in rows["mask"]]
    return images, masks, rows.reset_index(drop=True)


def augment(image: np.ndarray, mask: np.ndarray, patch: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A random patch: flip, rotation +/-15 degrees, scale 0.8-1.2 (one warp), colour jitter, noise."""
    height, width = mask.shape
    # centre: on a lesion half of the time, else anywhere in the middle of the face crop
    ys, xs = np.nonzero(mask)
    if len(ys) and rng.random() < 0.5:
        pick = rng.integers(len(ys))
        cy, cx = ys[pick] + rng.normal(0, patch / 6), xs[pick] + rng.normal(0, patch / 6)
    else:
        cy, cx = rng.uniform(0.25, 0.75) * height, rng.uniform(0.25, 0.75) * width
    angle, scale = rng.uniform(-15, 15), rng.uniform(0.8, 1.2)
    matrix = cv2.getRotationMatrix2D((float(cx), float(cy)), angle, scale)
    matrix[:, 2] += (patch / 2 - cx, patch / 2 - cy)
    out_image = cv2.warpAffine(image, matrix, (patch, patch), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
    out_mask = cv2.warpAffine(mask, matrix, (patch, patch), flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_REFLECT_101)
    if rng.random() < 0.5:
        out_image, out_mask = out_image[:, ::-1], out_mask[:, ::-1]
    x = out_image.astype(np.float32)
    x = (x - x.mean()) * rng.uniform(0.85, 1.15) + x.mean() * rng.uniform(0.85, 1.15)  # contrast, brightness
    grey = x.mean(axis=2, keepdims=True)
    x = grey + (x - grey) * rng.uniform(0.85, 1.15)  # saturation
    x += rng.normal(0, rng.uniform(0, 4), x.shape)  # sensor noise
    return np.clip(x, 0, 255).astype(np.uint8), np.ascontiguousarray(out_mask)


def _to_tensor(images: list[np.ndarray]):
    import torch

    x = np.stack(images).astype(np.float32) / 255.0
    x = (x - np.array(IMAGENET_MEAN, np.float32)) / np.array(IMAGENET_STD, np.float32)
    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))


def dice_loss(logits, target):
    import torch

    probs = logits.float().softmax(dim=1)
    one_hot = torch.nn.functional.one_hot(target, NUM_CLASSES).permute(0, 3, 1, 2).float()
    dims = (0, 2, 3)
    inter = (probs * one_hot).sum(dims)
    union = probs.sum(dims) + one_hot.sum(dims)
    return 1 - ((2 * inter + 1) / (union + 1))[1:].mean()  # conditions only


def confusion(pred: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """NUM_CLASSES x NUM_CLASSES counts, rows = truth, columns = prediction."""
    return np.bincount(truth.ravel().astype(np.int64) * NUM_CLASSES + pred.ravel(),
                       minlength=NUM_CLASSES**2).reshape(NUM_CLASSES, NUM_CLASSES)


def iou_from_confusion(matrix: np.ndarray) -> dict[str, float]:
    """IoU per condition (background left out); NaN where a class never appears."""
    inter = np.diag(matrix).astype(np.float64)
    union = matrix.sum(0) + matrix.sum(1) - inter
    return {LABELS[i].name: (float(inter[i] / union[i]) if union[i] else float("nan")) for i in range(1, NUM_CLASSES)}


def predict_full(model, image: np.ndarray, device, autocast_dtype) -> np.ndarray:
    """Label map of a whole RGB image (padded to a multiple of 32)."""
    import torch

    height, width = image.shape[:2]
    pad_h, pad_w = (-height) % 32, (-width) % 32
    padded = cv2.copyMakeBorder(image, 0, pad_h, 0, pad_w, cv2.BORDER_REFLECT_101)
    with torch.inference_mode(), torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
        logits = model(_to_tensor([padded]).to(device))
    return logits.float().argmax(dim=1)[0, :height, :width].cpu().numpy().astype(np.uint8)


def _autocast_dtype(device):
    import torch

    from core.segmentation import cpu_has_bf16

    if device.type == "cuda":
        return torch.float16
    return torch.bfloat16 if cpu_has_bf16() else None


def train(config: TrainConfig, resume: bool = False, progress: bool = True) -> dict:
    """Train; returns the best validation metrics. See the module docstring for the run folder."""
    import torch

    from core.segmentation import build_model
    from weights import WeightSpec, save_checkpoint

    # 1. Check inputs, prepare the run folder.
    if config.loss not in ("ce", "ce+dice"):
        raise GlowAIError(f"--loss {config.loss}: use ce or ce+dice")
    if config.patch % 32 or config.patch < 64:
        raise GlowAIError(f"--patch {config.patch}: use a multiple of 32, at least 64")
    out, data = Path(config.out), Path(config.data)
    out.mkdir(parents=True, exist_ok=True)
    state_path = out / "state.pt"
    if resume and state_path.is_file():
        saved = json.loads((out / "config.json").read_text())
        wanted = {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(config).items() if k != "epochs"}
        if {k: saved.get(k) for k in wanted} != wanted:
            raise GlowAIError(f"{out}: --resume with other settings than the run was started with; use a new --out")
    elif (out / "metrics.csv").is_file() and not resume:
        raise GlowAIError(f"{out} already holds a run; pass --resume to continue it or choose a new --out")
    (out / "config.json").write_text(json.dumps(asdict(config), indent=2))
    random.seed(config.seed)
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    device = torch.device(config.device)
    # 2. Data (kept in memory: a few thousand 512 px samples fit easily).
    train_images, train_masks, _ = _load_split(data, "train")
    val_images, val_masks, _ = _load_split(data, "val", config.val_limit)
    # 3. Model, optimiser, schedule.
    if config.pretrained:
        import segmentation_models_pytorch as smp

        model = smp.Unet(config.encoder, encoder_weights="imagenet", classes=NUM_CLASSES,
                         decoder_channels=list(config.decoder_channels))
    else:
        model = build_model("Unet", config.encoder, decoder_channels=list(config.decoder_channels))
    if config.init and not (resume and state_path.is_file()):
        _load_init(model, config.init)
    model.to(device)
    optimiser = torch.optim.Adam(model.parameters(), lr=config.lr)
    steps_per_epoch = max(1, len(train_images) * config.patches_per_image // config.batch)
    total_steps = steps_per_epoch * config.epochs
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimiser, lambda step: 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(step, total_steps) / total_steps)))
    scaler = torch.amp.GradScaler("cuda", enabled=device.type == "cuda")
    autocast_dtype = _autocast_dtype(device)
    class_weights = torch.tensor([1.0] + [config.class_weight] * (NUM_CLASSES - 1), device=device)
    start_epoch, best = 0, {"miou": -1.0}
    if resume and state_path.is_file():
        from weights import load_state_dict

        state = torch.load(state_path, map_location=device, weights_only=True)
        model.load_state_dict(load_state_dict(out / "last.safetensors")[0])
        optimiser.load_state_dict(state["optimiser"])
        schedule.load_state_dict(state["schedule"])
        start_epoch, best = int(state["epoch"]) + 1, json.loads(state["best"])
        rng = np.random.default_rng([config.seed, start_epoch])
        torch.manual_seed(config.seed + start_epoch)
    spec = WeightSpec(name=config.name, task="blemish-segmentation", license="Apache-2.0", arch="Unet",
                      encoder=config.encoder, classes=tuple(label.name for label in LABELS), input_size=config.size,
                      mean=IMAGENET_MEAN, std=IMAGENET_STD,
                      arch_kwargs={"decoder_channels": list(config.decoder_channels)},
                      description=f"trained by `glowai train` on {data.name}")
    # 4. Epochs: train on patches, validate on whole images, keep the best.
    for epoch in range(start_epoch, config.epochs):
        model.train()
        order = rng.permutation(np.repeat(np.arange(len(train_images)), config.patches_per_image))
        losses = []
        bar = tqdm(range(steps_per_epoch), desc=f"epoch {epoch + 1}/{config.epochs}", disable=not progress)
        for step in bar:
            batch = [augment(train_images[i], train_masks[i], config.patch, rng)
                     for i in order[step * config.batch:(step + 1) * config.batch]]
            x = _to_tensor([b[0] for b in batch]).to(device)
            y = torch.from_numpy(np.stack([b[1] for b in batch]).astype(np.int64)).to(device)
            with torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
                logits = model(x)
            loss = torch.nn.functional.cross_entropy(logits.float(), y, weight=class_weights)
            if config.loss == "ce+dice":
                loss = loss + dice_loss(logits, y)
            optimiser.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimiser)
            scaler.update()
            schedule.step()
            losses.append(loss.item())
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}")
        model.eval()
        matrix = sum(confusion(predict_full(model, image, device, autocast_dtype), mask)
                     for image, mask in zip(val_images, val_masks, strict=True))
        per_class = iou_from_confusion(matrix)
        miou = float(np.nanmean(list(per_class.values())))
        row = {"epoch": epoch + 1, "loss": round(float(np.mean(losses)), 5), "val_miou": round(miou, 5),
               **{f"iou_{k}": round(v, 5) for k, v in per_class.items()}, "lr": optimiser.param_groups[0]["lr"]}
        _append_csv(out / "metrics.csv", row)
        state_dict = {k: v.detach().cpu() for k, v in model.state_dict().items()}
        if miou > best["miou"]:
            best = {"miou": miou, "epoch": epoch + 1, "per_class": per_class}
            save_checkpoint(state_dict, out / "best.safetensors", spec)
        save_checkpoint(state_dict, out / "last.safetensors", spec)
        tmp = out / "state.pt.tmp"
        torch.save({"optimiser": optimiser.state_dict(), "schedule": schedule.state_dict(), "epoch": epoch,
                    "best": json.dumps(best)}, tmp)
        os.replace(tmp, state_path)
        plot_metrics(out / "metrics.csv", out / "metrics.png")
        if progress:
            print(f"epoch {epoch + 1}: loss {row['loss']:.4f}, val mIoU {miou:.3f} "
                  + ", ".join(f"{k} {v:.2f}" for k, v in per_class.items()), flush=True)
    return best


def _load_init(model, init: str) -> None:
    """Fine-tuning: copy the weights of `init` (a registry name or a .safetensors path) into `model`."""
    from weights import load_state_dict, lookup, resolve

    tensors, _ = load_state_dict(resolve(lookup(init), allow_network=False))
    try:
        model.load_state_dict({name: tensor.float() for name, tensor in tensors.items()}, strict=True)
    except RuntimeError as err:
        raise GlowAIError(f"--init {init}: its weights do not fit this model (same --encoder and "
                          f"--decoder-channels needed): {str(err).splitlines()[0][:120]}") from None


def _append_csv(path: Path, row: dict) -> None:
    new = not path.is_file()
    with open(path, "a", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(row))
        if new:
            writer.writeheader()
        writer.writerow(row)


def plot_metrics(csv_path: Path, png_path: Path) -> None:
    """Loss and validation IoU per epoch, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = pd.read_csv(csv_path)
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    left.plot(table["epoch"], table["loss"], marker="o")
    left.set(title="training loss", xlabel="epoch")
    for column in [c for c in table.columns if c.startswith("iou_")] + ["val_miou"]:
        right.plot(table["epoch"], table[column], marker=".", label=column.replace("iou_", ""),
                   linewidth=2.5 if column == "val_miou" else 1.2)
    right.set(title="validation IoU", xlabel="epoch", ylim=(0, 1))
    right.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(png_path, dpi=90)
    plt.close(fig)
