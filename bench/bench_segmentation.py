"""Segmentation runtimes on this machine: torch fp32 vs bf16+channels_last vs ONNX Runtime fp32 and int8.

Each runtime runs the full predictor (crop, resize, network, softmax, paste back) on a portrait
at the spec's input size, in the same process; ratios are against torch-fp32.
Run: .venv/bin/python bench/bench_segmentation.py [--encoders mobilenet_v2 resnet34] [--runs 15]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
from common import ROOT, percentiles, stand_in_checkpoint


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--encoders", nargs="+", default=["mobilenet_v2", "resnet34"])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("GLOWAI_CACHE", str(ROOT / "out" / "bench-cache"))

    import torch

    from core.imageio import load_image
    from core.segmentation import Segmenter, SegmenterOptions, cpu_has_bf16

    image = load_image(ROOT / "data" / "examples" / "portrait-001.jpg")
    skin = np.zeros(image.shape[:2], bool)
    skin[250:650, 220:580] = True
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, native bf16: {cpu_has_bf16()}, "
          f"input {args.size}, {args.runs} runs after 2 warm-ups")
    print(f"{'encoder':<14} {'runtime':<11} {'p50 ms':>8} {'p95 ms':>8} {'speed-up':>9}")
    for encoder in args.encoders:
        path = stand_in_checkpoint(encoder, args.size)
        baseline = None
        for runtime in ("torch-fp32", "torch-bf16", "onnx", "onnx-int8"):
            with Segmenter(SegmenterOptions(weights=str(path), runtime=runtime)) as segmenter:
                for _ in range(2):
                    segmenter.segment(image, skin)
                times = []
                for _ in range(args.runs):
                    start = time.perf_counter()
                    segmenter.segment(image, skin)
                    times.append((time.perf_counter() - start) * 1000)
            p50, p95 = percentiles(times)
            baseline = baseline or p50
            print(f"{encoder:<14} {runtime:<11} {p50:8.1f} {p95:8.1f} {baseline / p50:8.2f}x")


if __name__ == "__main__":
    main()
