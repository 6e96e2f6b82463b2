"""Training the blemish model: synthetic samples (pixel masks for the four conditions) and, with
`real`, ACNE04 photos whose expert lesion circles teach the lesion-centre head (see core/model/data.py).

Recipe (the defaults): smp U-Net, ResNet-34 encoder, cross-entropy (optionally + Dice), Adam at
1e-4 with cosine decay, batch 8. With `lesion_head` the network has one more output channel, a
lesion-centre heatmap trained with the penalty-reduced focal loss of CenterNet (Zhou et al. 2019)
against Gaussians at the lesion centres; real photos train only that channel (they have no pixel
labels), synthetic samples train both. Training sees random patches at full resolution (small
lesions survive) with flips, rotation +/-15 degrees, scale 0.8-1.25, colour jitter and noise.
The best checkpoint is chosen by validation mIoU over the four conditions (synthetic, held-out
identities) plus, with `real`, the lesion F1 on held-out training photos (never the dev split).
Seeded and resumable: every patch draws its augmentation from its own generator (seed, epoch,
position), so `workers` (DataLoader processes that cut the patches) changes the speed, never the
result. On CUDA it trains in fp16 mixed precision; on CPUs with native bf16 in bf16 autocast.

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
from core.model.data import (
    IGNORE,
    IMAGENET_MEAN,
    IMAGENET_STD,
    Example,
    augment,
    lesion_heatmap,
    load_acne04,
    load_synth_split,
    to_tensor,
)


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
    patches_per_image: int = 1  # per epoch, per synthetic training image
    val_limit: int = 120  # validation images per epoch (all of them in `glowai eval segmentation`)
    seed: int = 0
    device: str = "cpu"
    pretrained: bool = False  # ImageNet encoder weights (needs the network)
    name: str = "glowai-unet"
    init: str | None = None  # start from these weights (registry name or .safetensors; same architecture)
    license: str = "Apache-2.0"  # of the weights: follows the data (ACNE04 photos: research use only)
    real: str | None = None  # ACNE04-like folder (images/ + acne04v2_lesions.json) for the lesion head
    real_share: float = 0.5  # share of the patches that come from the real photos
    real_val: int = 40  # real photos held out of training for the lesion validation (every n-th by name)
    lesion_head: bool = False  # one more output channel: the lesion-centre heatmap
    lesion_weight: float = 1.0  # weight of the heatmap loss
    synth_lesions: bool = True  # procedural lesions train the heatmap too (False: only the real photos' circles)
    freeze_bn: bool = False  # BatchNorm keeps the statistics it started with (short fine-tunes on another data mix)
    workers: int = 0  # DataLoader processes cutting patches (0: in this process); speed only, never the result


RESULT_NEUTRAL = ("epochs", "workers")  # settings a resumed run may change


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


def predict_full(model, image: np.ndarray, device, autocast_dtype) -> tuple[np.ndarray, np.ndarray | None]:
    """Label map (uint8) of a whole RGB image (padded to a multiple of 32) and, for a model with
    a lesion head, its heatmap (float32 probabilities; None otherwise)."""
    import torch

    height, width = image.shape[:2]
    pad_h, pad_w = (-height) % 32, (-width) % 32
    padded = cv2.copyMakeBorder(image, 0, pad_h, 0, pad_w, cv2.BORDER_REFLECT_101)
    with torch.inference_mode(), torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
        logits = model(to_tensor([padded]).to(device))
    logits = logits.float()[0, :, :height, :width].cpu()
    labels = logits[:NUM_CLASSES].argmax(dim=0).numpy().astype(np.uint8)
    heat = logits[NUM_CLASSES].sigmoid().numpy() if logits.shape[0] > NUM_CLASSES else None
    return labels, heat


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
    if config.real and not config.lesion_head:
        raise GlowAIError("--real teaches the lesion-centre head: add --lesion-head")
    if config.workers < 0:
        raise GlowAIError(f"--workers {config.workers}: use 0 (this process) or more")
    if not 0 <= config.real_share < 1:
        raise GlowAIError(f"--real-share {config.real_share}: use a share in [0, 1)")
    out, data = Path(config.out), Path(config.data)
    out.mkdir(parents=True, exist_ok=True)
    state_path = out / "state.pt"
    if resume and state_path.is_file():
        saved = json.loads((out / "config.json").read_text())
        wanted = {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(config).items()
                  if k not in RESULT_NEUTRAL}
        if {k: saved.get(k, TrainConfig.__dataclass_fields__[k].default) for k in wanted} != wanted:
            raise GlowAIError(f"{out}: --resume with other settings than the run was started with; use a new --out")
    elif (out / "metrics.csv").is_file() and not resume:
        raise GlowAIError(f"{out} already holds a run; pass --resume to continue it or choose a new --out")
    (out / "config.json").write_text(json.dumps(asdict(config), indent=2))
    random.seed(config.seed)
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    device = torch.device(config.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed patch size: let cuDNN pick its fastest kernels
    # 2. Data (kept in memory: a few thousand 512-640 px photos fit easily).
    synth_train = load_synth_split(data, "train")
    synth_val = load_synth_split(data, "val", config.val_limit)
    real_train: list[Example] = []
    real_val: list[Example] = []
    if config.real:
        real = load_acne04(Path(config.real))
        step = max(2, len(real) // max(1, config.real_val)) if config.real_val else 0
        real_val = real[::step][:config.real_val] if step else []
        held = {e.name for e in real_val}
        real_train = [e for e in real if e.name not in held]
    # 3. Model, optimiser, schedule.
    outputs = NUM_CLASSES + int(config.lesion_head)
    if config.pretrained:
        import segmentation_models_pytorch as smp

        model = smp.Unet(config.encoder, encoder_weights="imagenet", classes=outputs,
                         decoder_channels=list(config.decoder_channels))
    else:
        model = build_model("Unet", config.encoder, classes=outputs, decoder_channels=list(config.decoder_channels))
    if config.lesion_head:
        with torch.no_grad():  # heatmap prior 0.01 (CenterNet's focal-loss start)
            model.segmentation_head[0].bias[NUM_CLASSES] = -4.6
    if config.init and not (resume and state_path.is_file()):
        _load_init(model, config.init)
    model.to(device)
    optimiser = torch.optim.Adam(model.parameters(), lr=config.lr)
    synth_patches = len(synth_train) * config.patches_per_image
    real_patches = round(synth_patches * config.real_share / (1 - config.real_share)) if real_train else 0
    steps_per_epoch = max(1, (synth_patches + real_patches) // config.batch)
    total_steps = steps_per_epoch * config.epochs
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimiser, lambda step: 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(step, total_steps) / total_steps)))
    scaler = torch.amp.GradScaler("cuda", enabled=device.type == "cuda")
    autocast_dtype = _autocast_dtype(device)
    class_weights = torch.tensor([1.0] + [config.class_weight] * (NUM_CLASSES - 1), device=device)
    start_epoch, best = 0, {"score": -1.0}
    if resume and state_path.is_file():
        from weights import load_state_dict

        state = torch.load(state_path, map_location=device, weights_only=True)
        model.load_state_dict(load_state_dict(out / "last.safetensors")[0])
        optimiser.load_state_dict(state["optimiser"])
        schedule.load_state_dict(state["schedule"])
        start_epoch, best = int(state["epoch"]) + 1, json.loads(state["best"])
        best.setdefault("score", best.get("miou", -1.0))
        rng = np.random.default_rng([config.seed, start_epoch])
        torch.manual_seed(config.seed + start_epoch)
    spec = WeightSpec(name=config.name, task="blemish-segmentation", license=config.license, arch="Unet",
                      encoder=config.encoder, classes=tuple(label.name for label in LABELS), input_size=config.size,
                      mean=IMAGENET_MEAN, std=IMAGENET_STD,
                      arch_kwargs={"decoder_channels": list(config.decoder_channels)},
                      lesion_head=config.lesion_head,
                      description=f"trained by `glowai train` on {data.name}"
                                  + (f" and {Path(config.real).name}" if config.real else ""))
    # 4. Epochs: train on patches, validate on whole images, keep the best.
    pool = synth_train + real_train
    for epoch in range(start_epoch, config.epochs):
        model.train()
        if config.freeze_bn:  # running statistics stay those of --init; the affine weights still learn
            for module in model.modules():
                if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                    module.eval()
        order = np.concatenate([np.repeat(np.arange(len(synth_train)), config.patches_per_image),
                                len(synth_train) + rng.integers(0, max(1, len(real_train)), real_patches)])
        order = rng.permutation(order.astype(np.int64))
        patches = PatchSet(pool, order[:steps_per_epoch * config.batch], config.patch, config.seed, epoch,
                           config.lesion_head)
        loader = torch.utils.data.DataLoader(patches, batch_size=config.batch, num_workers=config.workers,
                                             pin_memory=device.type == "cuda", persistent_workers=False)
        losses = []
        bar = tqdm(loader, desc=f"epoch {epoch + 1}/{config.epochs}", disable=not progress)
        for images, masks, heats, real in bar:
            x = normalise(images.to(device, non_blocking=True))
            y = masks.to(device, non_blocking=True).long()
            with torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
                logits = model(x)
            logits = logits.float()
            loss = _segmentation_loss(logits[:, :NUM_CLASSES], y, class_weights, config.loss)
            if config.lesion_head:
                taught = real if not config.synth_lesions else torch.ones_like(real)
                if taught.any():
                    keep = torch.nonzero(taught).flatten().to(device)
                    loss = loss + config.lesion_weight * focal_heatmap_loss(
                        logits[keep, NUM_CLASSES], heats[taught].to(device, non_blocking=True))
            optimiser.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimiser)
            scaler.update()
            schedule.step()
            losses.append(loss.item())
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}")
        model.eval()
        row, scores = _validate(model, synth_val, real_val, device, autocast_dtype, config.lesion_head)
        row = {"epoch": epoch + 1, "loss": round(float(np.mean(losses)), 5), **row, "lr": optimiser.param_groups[0]["lr"]}
        _append_csv(out / "metrics.csv", row)
        state_dict = {k: v.detach().cpu() for k, v in model.state_dict().items()}
        if scores["score"] > best["score"]:
            best = {**scores, "epoch": epoch + 1}
            save_checkpoint(state_dict, out / "best.safetensors", spec)
        save_checkpoint(state_dict, out / "last.safetensors", spec)
        tmp = out / "state.pt.tmp"
        torch.save({"optimiser": optimiser.state_dict(), "schedule": schedule.state_dict(), "epoch": epoch,
                    "best": json.dumps(best)}, tmp)
        os.replace(tmp, state_path)
        plot_metrics(out / "metrics.csv", out / "metrics.png")
        if progress:
            print(f"epoch {epoch + 1}: " + ", ".join(f"{k} {v}" for k, v in row.items() if k not in ("epoch", "lr")),
                  flush=True)
    return best


class PatchSet:
    """One epoch's training patches as a map-style dataset (a torch DataLoader batches it, in worker
    processes when asked): item k is a patch of pool[order[k]] augmented with the generator seeded
    by (seed, epoch, k). Yields (image uint8 HxWx3, mask uint8 HxW, heatmap float32 HxW (empty
    without the lesion head), real bool)."""

    def __init__(self, pool: list[Example], order: np.ndarray, patch: int, seed: int, epoch: int,
                 lesion_head: bool) -> None:
        self.pool, self.order, self.patch = pool, order, patch
        self.seed, self.epoch, self.lesion_head = seed, epoch, lesion_head

    def __len__(self) -> int:
        return len(self.order)

    def __getitem__(self, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
        example = self.pool[int(self.order[k])]
        rng = np.random.default_rng([self.seed, self.epoch, k])
        image, mask, lesions = augment(example, self.patch, rng)
        shape = (self.patch, self.patch) if self.lesion_head else (0, 0)
        heat = lesion_heatmap(shape, lesions) if self.lesion_head else np.zeros(shape, np.float32)
        return np.ascontiguousarray(image), mask, heat, example.real


def normalise(images):
    """NCHW float32 ImageNet-normalised tensor from a batch of RGB uint8 NHWC images, on their device
    (the same values as `to_tensor`)."""
    import torch

    mean = torch.tensor(IMAGENET_MEAN, device=images.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=images.device).view(1, 3, 1, 1)
    return (images.permute(0, 3, 1, 2).float() / 255.0 - mean) / std


def _segmentation_loss(logits, target, class_weights, kind: str):
    """Cross-entropy over the labelled pixels (IGNORE skipped; 0 when a batch has none), + Dice."""
    import torch

    labelled = target != IGNORE
    if not labelled.any():
        return logits.sum() * 0.0
    loss = torch.nn.functional.cross_entropy(logits, target, weight=class_weights, ignore_index=IGNORE)
    if kind == "ce+dice":
        keep = labelled.all(dim=2).all(dim=1)  # Dice on the fully labelled samples (the synthetic ones)
        if keep.any():
            loss = loss + dice_loss(logits[keep], target[keep])
    return loss


def focal_heatmap_loss(logits, target, alpha: float = 2.0, beta: float = 4.0):
    """CenterNet's penalty-reduced focal loss: logits and Gaussian target (N, H, W), peaks == 1."""
    import torch

    p = torch.sigmoid(logits).clamp(1e-4, 1 - 1e-4)
    peaks = target >= 1.0 - 1e-4
    positive = -((1 - p) ** alpha) * torch.log(p) * peaks
    negative = -((1 - target) ** beta) * (p ** alpha) * torch.log(1 - p) * ~peaks
    return (positive.sum() + negative.sum()) / peaks.sum().clamp(min=1)


def _validate(model, synth_val: list[Example], real_val: list[Example], device, autocast_dtype,
              lesion_head: bool) -> tuple[dict, dict]:
    """Synthetic mIoU (and lesion F1 on held-out real photos): (metrics.csv columns, best-keeping scores)."""
    from core.lesions import lesion_peaks

    matrix = np.zeros((NUM_CLASSES, NUM_CLASSES), np.int64)
    for example in synth_val:
        matrix += confusion(predict_full(model, example.image, device, autocast_dtype)[0], example.mask)
    per_class = iou_from_confusion(matrix)
    miou = float(np.nanmean(list(per_class.values())))
    row = {"val_miou": round(miou, 5), **{f"iou_{k}": round(v, 5) for k, v in per_class.items()}}
    scores = {"miou": miou, "per_class": per_class, "score": miou}
    if lesion_head and real_val:
        heats = [predict_full(model, e.image, device, autocast_dtype)[1] for e in real_val]
        best_f1, best_threshold, best_recall = 0.0, None, 0.0
        for threshold in (0.1, 0.2, 0.3, 0.4, 0.5, 0.6):
            hits = predicted = truth = 0
            for example, heat in zip(real_val, heats, strict=True):
                peaks = lesion_peaks(heat, threshold)
                hits += count_matches(peaks[:, :2], example.lesions)
                predicted += len(peaks)
                truth += len(example.lesions)
            f1 = 2 * hits / max(1, predicted + truth)
            if f1 > best_f1:
                best_f1, best_threshold, best_recall = f1, threshold, hits / max(1, truth)
        row.update(val_lesion_f1=round(best_f1, 5), val_lesion_recall=round(best_recall, 5),
                   val_lesion_threshold=best_threshold)
        scores.update(lesion_f1=best_f1, lesion_threshold=best_threshold, score=miou + best_f1)
    return row, scores


def count_matches(points: np.ndarray, circles: np.ndarray) -> int:
    """One-to-one matches of predicted points (N, 2) to circles (M, 3): a point inside a circle,
    closest pairs first (the rule of `glowai eval acne`)."""
    if not len(points) or not len(circles):
        return 0
    distance = np.hypot(points[:, None, 0] - circles[None, :, 0], points[:, None, 1] - circles[None, :, 1])
    pairs = sorted(zip(*np.nonzero(distance <= circles[None, :, 2]), strict=True), key=lambda ij: distance[ij])
    used_p, used_c = set(), set()
    for i, j in pairs:
        if i not in used_p and j not in used_c:
            used_p.add(i)
            used_c.add(j)
    return len(used_p)


def _load_init(model, init: str) -> None:
    """Fine-tuning: copy the weights of `init` (a registry name or a .safetensors path) into `model`;
    a checkpoint without the lesion head may start one that has it."""
    import torch

    from weights import load_state_dict, lookup, resolve

    tensors, _ = load_state_dict(resolve(lookup(init), allow_network=False))
    tensors = {name: tensor.float() for name, tensor in tensors.items()}
    own = model.state_dict()
    for name in ("segmentation_head.0.weight", "segmentation_head.0.bias"):
        if name in tensors and name in own and tensors[name].shape[0] == NUM_CLASSES < own[name].shape[0]:
            # a model without the lesion head: its class channels, the new head channel as initialised
            tensors[name] = torch.cat([tensors[name], own[name][NUM_CLASSES:]])
    try:
        model.load_state_dict(tensors, strict=True)
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
