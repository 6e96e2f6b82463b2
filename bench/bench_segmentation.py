"""Segmentation runtimes on this machine: torch fp32 vs bf16+channels_last vs ONNX Runtime fp32 and int8.

Each runtime runs the full predictor (crop, resize, network, softmax, paste back) on a portrait
at the spec's input size, in the same process; ratios are against torch-fp32. The registry
default model comes first (when installed), then random-init stand-ins of other encoders. For
each network: its FLOPs at that input (torch.utils.flop_counter) and the floor they set at this
CPU's measured fp32 matmul rate, against which each runtime's time is shown.
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
    parser.add_argument("--no-default", action="store_true", help="leave out the registry default model")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("GLOWAI_CACHE", str(ROOT / "out" / "bench-cache"))

    import torch

    import weights
    from core.imageio import load_image
    from core.segmentation import Segmenter, SegmenterOptions, cpu_has_bf16

    image = load_image(ROOT / "data" / "examples" / "portrait-001.jpg")
    skin = np.zeros(image.shape[:2], bool)
    skin[250:650, 220:580] = True
    rate = matmul_gflops(torch)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, native bf16: {cpu_has_bf16()}, "
          f"fp32 matmul {rate:.0f} GFLOP/s, {args.runs} runs after 2 warm-ups")
    items = [] if args.no_default or not weights.is_installed(weights.default_spec()) else [weights.default_spec().name]
    items += [str(stand_in_checkpoint(encoder, args.size)) for encoder in args.encoders]
    print(f"{'model':<16} {'runtime':<11} {'p50 ms':>8} {'p95 ms':>8} {'speed-up':>9} {'vs floor':>9}")
    for item in items:
        baseline = floor_ms = None
        for runtime in ("torch-fp32", "torch-bf16", "onnx", "onnx-int8"):
            with Segmenter(SegmenterOptions(weights=item, runtime=runtime)) as segmenter:
                name = segmenter.spec.name.removeprefix("stand-in-")
                if floor_ms is None:  # torch-fp32 comes first: its network is the one counted
                    x = segmenter._network_input(image, skin)[0]
                    gflop = network_gflop(torch, segmenter.model, x)
                    floor_ms = gflop / rate * 1000
                    print(f"{name}: {gflop:.1f} GFLOP at input {x.shape[2]}x{x.shape[3]}, fp32 floor {floor_ms:.0f} ms")
                for _ in range(2):
                    segmenter.segment(image, skin)
                times = []
                for _ in range(args.runs):
                    start = time.perf_counter()
                    segmenter.segment(image, skin)
                    times.append((time.perf_counter() - start) * 1000)
            p50, p95 = percentiles(times)
            baseline = baseline or p50
            print(f"{name:<16} {runtime:<11} {p50:8.1f} {p95:8.1f} {baseline / p50:8.2f}x {p50 / floor_ms:8.2f}x")


def matmul_gflops(torch, n: int = 2048, runs: int = 5) -> float:
    """This CPU's fp32 matmul rate (GFLOP/s) on all threads: the floor for a network of known FLOPs."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    start = time.perf_counter()
    for _ in range(runs):
        a @ b
    return 2 * n**3 * runs / (time.perf_counter() - start) / 1e9


def network_gflop(torch, model, x) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        model.float()(torch.from_numpy(x))
    return counter.get_total_flops() / 1e9


if __name__ == "__main__":
    main()
