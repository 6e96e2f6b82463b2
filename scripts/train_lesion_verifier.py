"""Train the lesion verifier (core/lesion_verifier.py) on ACNE04 training photos.

Every photo with expert circles is analysed once by the segmentation model (the shipped one by
default), as `glowai analyze` would; each heatmap peak from --floor up on the analysed skin is a
candidate, labelled 1 when it lies inside an expert circle; the circle centres are added as
positives. A small CNN learns to tell them apart from a 32x32 patch (RGB + heat). The photos the
segmentation model held out of its own training (every 20th by name, the first 40: `glowai train
--real-val 40`) are held out here too: their ROC AUC, against the heat alone, is the validation
figure (the heat of photos the U-Net trained on is more confident than on new photos, so it is
only judged there). Never run it on acne04-dev: that split calibrates and evaluates.

    .venv/bin/python scripts/train_lesion_verifier.py --data ../shared/data/acne04-train \
        --out runs/verifier --epochs 12

Writes OUT/candidates.npz (the patches, reused by --resume and later runs), OUT/last.safetensors
and OUT/optimiser.pt after every epoch (--resume goes on from them), OUT/metrics.csv and
OUT/verifier.safetensors (the last epoch). About 2 minutes to analyse 805 photos and 1.5 minutes an
epoch at width 24 on 2 cores.
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.lesion_verifier import CONTRASTS, PATCH, build_verifier, cut_patches, normalise, verifier_metadata  # noqa: E402
from core.lesions import lesion_peaks  # noqa: E402

MARGIN = 4  # jitter room, pixels each side


def collect(data: Path, weights: str | None, floor: float, out: Path) -> dict[str, np.ndarray]:
    """Candidates and circle centres of every annotated photo, as raw patches with their labels."""
    import tempfile

    from core.model.data import acne04_circles
    from core.model.evaluate import acne_analyses

    circles = acne04_circles(data)
    patches, labels, heats, sources, names = [], [], [], [], []
    with tempfile.TemporaryDirectory() as tmp:  # only the annotated photos are analysed
        images = Path(tmp) / "images"
        images.mkdir()
        for name in circles:
            (images / name).symlink_to((data / "images" / name).resolve())
        (Path(tmp) / "acne04v2_lesions.json").symlink_to((data / "acne04v2_lesions.json").resolve())
        for path, analysis in acne_analyses(Path(tmp), weights, keep_lesion_heat=True):
            heat = np.where(analysis.regions.skin, analysis.segmentation.lesion_heat, 0).astype(np.float32)
            peaks = lesion_peaks(heat, floor)
            found = np.asarray(circles[path.name], np.float32).reshape(-1, 3) * np.float32(analysis.scale)
            inside = np.zeros(len(peaks), bool)
            if len(peaks) and len(found):
                inside = (np.hypot(peaks[:, None, 0] - found[None, :, 0], peaks[:, None, 1] - found[None, :, 1])
                          <= found[None, :, 2]).any(1)
            points = np.concatenate([peaks[:, :2], found[:, :2]])
            if not len(points):
                continue
            rows = np.clip(np.round(points[:, 1]).astype(int), 0, heat.shape[0] - 1)
            cols = np.clip(np.round(points[:, 0]).astype(int), 0, heat.shape[1] - 1)
            patches.append(cut_patches(analysis.image, heat, points, MARGIN).astype(np.float16))
            labels.append(np.concatenate([inside, np.ones(len(found), bool)]))
            heats.append(heat[rows, cols])
            sources.append(np.concatenate([np.zeros(len(peaks), np.uint8), np.ones(len(found), np.uint8)]))
            names += [path.name] * len(points)
    arrays = {"patches": np.concatenate(patches), "labels": np.concatenate(labels).astype(np.float32),
              "heat": np.concatenate(heats), "source": np.concatenate(sources), "names": np.array(names)}
    np.savez(out / "candidates.npz", **arrays)
    return arrays


def roc_auc(truth: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve (rank form; ties broken by order)."""
    order = np.argsort(score, kind="stable")
    ranks = np.empty(len(score))
    ranks[order] = np.arange(1, len(score) + 1)
    positive = truth > 0.5
    n1, n0 = positive.sum(), (~positive).sum()
    return float((ranks[positive].sum() - n1 * (n1 + 1) / 2) / max(1, n1 * n0))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, type=Path, help="ACNE04 training folder (images/ + acne04v2_lesions.json)")
    parser.add_argument("--weights", default=None, help="segmentation model whose candidates are verified (default: shipped)")
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--floor", type=float, default=0.1, help="candidates: heatmap peaks from this value")
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--rgb-only", action="store_true",
                        help="the patch's colours only, not the heatmap (the score multiplies in the heat anyway)")
    parser.add_argument("--contrast", choices=CONTRASTS, default="absolute",
                        help="patch colours minus their mean over a fixed spread (absolute) or over the mean "
                             "itself (relative: the same lesion on darker skin gives the same input)")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--val", type=int, default=40, help="photos held out (the segmentation model's --real-val)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--resume", action="store_true", help="go on from OUT/last.safetensors")
    parser.add_argument("--stop-after", type=int, default=None,
                        help="run at most this many epochs now (split a run across sessions; --resume goes on)")
    args = parser.parse_args(argv)
    if "dev" in args.data.name:
        parser.error(f"{args.data}: the dev split is for calibration and evaluation, never for training")

    import torch
    from safetensors.torch import load_file

    from weights import safetensors_bytes

    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    cache = args.out / "candidates.npz"
    data = dict(np.load(cache)) if cache.is_file() else collect(args.data, args.weights, args.floor, args.out)
    names = sorted(set(data["names"].tolist()))
    step = max(2, len(names) // max(1, args.val)) if args.val else 0
    held = set(names[::step][:args.val]) if step else set()
    is_held = np.isin(data["names"], list(held))
    train_index = np.flatnonzero(~is_held)
    if not len(train_index):
        parser.error("no training patches: every annotated photo is held out (lower --val)")
    val_index = np.flatnonzero(is_held & (data["source"] == 0))  # the held-out photos' candidates
    print(f"{len(train_index)} training patches ({data['labels'][train_index].mean():.0%} lesions), "
          f"{len(val_index)} held-out candidates from {len(held)} photos")

    channels = 3 if args.rgb_only else 4
    net = build_verifier(args.width, channels)
    optimiser = torch.optim.AdamW(net.parameters(), args.lr, weight_decay=1e-4)
    steps_per_epoch = max(1, len(train_index) // args.batch)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, args.lr, total_steps=args.epochs * steps_per_epoch)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    first = 0
    last = args.out / "last.safetensors"
    if args.resume and last.is_file():
        from safetensors import safe_open

        with safe_open(str(last), "np") as handle:
            started_with = (handle.metadata() or {}).get("contrast", "absolute")
        if started_with != args.contrast:
            parser.error(f"{args.out} holds a run with --contrast {started_with}; resume it with the same --contrast")
        net.load_state_dict(load_file(str(last)))
        state = torch.load(args.out / "optimiser.pt", weights_only=True)
        if int(state.get("epochs", -1)) != args.epochs:
            parser.error(f"{args.out} holds a run planned for {state.get('epochs')} epochs; resume it with the same --epochs")
        optimiser.load_state_dict(state["optimiser"])
        schedule.load_state_dict(state["schedule"])
        first = int(state["epoch"]) + 1
        rng = np.random.default_rng(args.seed + first)
        print(f"resuming after epoch {first}")

    def batch(index: np.ndarray, augment: bool) -> torch.Tensor:
        raw = data["patches"][index]
        dx, dy = rng.integers(0, 2 * MARGIN + 1, 2) if augment else (MARGIN, MARGIN)
        x = normalise(raw[:, :, dy:dy + PATCH, dx:dx + PATCH], args.contrast)[:, :channels]
        if augment:  # flips, quarter turns, contrast: lesions have no up or left
            if rng.random() < 0.5:
                x = x[:, :, :, ::-1]
            if rng.random() < 0.5:
                x = x[:, :, ::-1]
            x = np.rot90(x, int(rng.integers(0, 4)), axes=(2, 3))
            x = x * rng.uniform(0.8, 1.25, (len(x), 1, 1, 1)).astype(np.float32)
        return torch.from_numpy(np.ascontiguousarray(x, np.float32))

    def predict(index: np.ndarray) -> np.ndarray:
        net.eval()
        with torch.inference_mode():
            out = [torch.sigmoid(net(batch(index[i:i + 1024], False))[:, 0]).numpy() for i in range(0, len(index), 1024)]
        net.train()
        return np.concatenate(out) if out else np.zeros(0, np.float32)

    metrics = args.out / "metrics.csv"
    if first == 0:
        metrics.write_text("epoch,loss,val_auc,heat_auc,combined_auc,seconds\n")
    heat_auc = roc_auc(data["labels"][val_index], data["heat"][val_index]) if len(val_index) else float("nan")
    from tqdm import tqdm

    for epoch in range(first, args.epochs if args.stop_after is None else min(args.epochs, first + args.stop_after)):
        started = time.time()
        order = rng.permutation(train_index)
        total = 0.0
        for k in tqdm(range(steps_per_epoch), desc=f"epoch {epoch + 1}/{args.epochs}", leave=False):
            index = np.sort(order[k * args.batch:(k + 1) * args.batch])
            loss = loss_fn(net(batch(index, True))[:, 0], torch.from_numpy(data["labels"][index]))
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
            total += loss.item()
        held_p = predict(val_index)
        val_auc = roc_auc(data["labels"][val_index], held_p) if len(val_index) else float("nan")
        combined_auc = (roc_auc(data["labels"][val_index], np.sqrt(data["heat"][val_index] * held_p))
                        if len(val_index) else float("nan"))  # what the Segmenter marks by: sqrt(heat x p)
        seconds = time.time() - started
        print(f"epoch {epoch + 1}: loss {total / max(1, steps_per_epoch):.4f}  held-out AUC {val_auc:.4f} "
              f"(heat alone {heat_auc:.4f}, sqrt(heat x p) {combined_auc:.4f})  {seconds:.0f} s", flush=True)
        with open(metrics, "a", newline="") as handle:
            csv.writer(handle).writerow([epoch + 1, round(total / max(1, steps_per_epoch), 5), round(val_auc, 5),
                                         round(heat_auc, 5), round(combined_auc, 5), round(seconds, 1)])
        tensors = {k: v.contiguous() for k, v in net.state_dict().items() if not k.endswith("num_batches_tracked")}
        meta = verifier_metadata(args.width, channels=channels, contrast=args.contrast,
                                 extra={"epoch": epoch + 1, "val_auc": round(val_auc, 4), "floor": args.floor,
                                        "segmenter": args.weights or "default"})
        (args.out / ".last.tmp").write_bytes(safetensors_bytes(tensors, meta))  # the same run, the same bytes
        torch.save({"optimiser": optimiser.state_dict(), "schedule": schedule.state_dict(), "epoch": epoch,
                    "epochs": args.epochs},
                   args.out / ".optimiser.tmp")
        (args.out / ".last.tmp").replace(last)  # a killed run keeps the previous epoch whole
        (args.out / ".optimiser.tmp").replace(args.out / "optimiser.pt")
    if last.is_file():
        (args.out / "verifier.safetensors").write_bytes(last.read_bytes())
        print(f"wrote {args.out / 'verifier.safetensors'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
