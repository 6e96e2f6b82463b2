"""Helpers shared by the benchmarks: percentiles and random-init stand-in checkpoints."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def percentiles(values_ms: list[float]) -> tuple[float, float]:
    array = np.asarray(values_ms)
    return float(np.percentile(array, 50)), float(np.percentile(array, 95))


def stand_in_checkpoint(encoder: str, input_size: int = 512, seed: int = 0) -> Path:
    """A randomly initialised U-Net saved like a real checkpoint, for timing only (its masks mean nothing)."""
    import torch

    from core.labels import LABELS
    from core.segmentation import build_model
    from weights import WeightSpec, save_checkpoint

    spec = WeightSpec(name=f"stand-in-{encoder}", task="blemish-segmentation", arch="Unet", encoder=encoder,
                      classes=tuple(label.name for label in LABELS), input_size=input_size,
                      mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), license="none (timing only)")
    torch.manual_seed(seed)
    model = build_model(spec.arch, spec.encoder)
    path = Path(tempfile.mkdtemp(prefix="glowai-bench-")) / f"{spec.name}.safetensors"
    save_checkpoint(model.state_dict(), path, spec)
    return path
