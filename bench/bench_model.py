"""End-to-end analyze on a 1000x1000 photo with the shipped model, against a naive baseline.

Shipped path: analyze() as users run it (face crop, registry default model, auto runtime).
Naive baseline, same process: an fp32 eager ResNet-34 U-Net at 512 on the whole frame (resized),
plus the same decode. Reports p50 of both and the ratio, and the model step (segment) of the
shipped model against a reference model (--reference, default glowai-unet-small, the v1 default)
in the same run, alternating the two so machine noise hits both alike; and, for a model with a
lesion verifier, its model step without the verifier (what the verifier adds; try an ACNE04 photo
with --photo, where it has many candidates to look at).
Run: .venv/bin/python bench/bench_model.py [--photo PATH] [--runs 15] [--reference NAME]
"""

from __future__ import annotations

import argparse
import time

import cv2
import numpy as np
from common import ROOT, percentiles


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photo", default=str(ROOT.parent / "shared" / "data" / "faces-cc0" / "001.jpg"))
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--weights", help="default: the registry default model")
    parser.add_argument("--reference", default="glowai-unet-small", help="model whose step the shipped one is timed against")
    args = parser.parse_args()

    import torch

    from core.imageio import load_image
    from core.pipeline import AnalyzeOptions, Analyzer
    from core.segmentation import SegmenterOptions, build_model

    image = load_image(args.photo)
    if image.shape[:2] != (1000, 1000):
        image = cv2.resize(image, (1000, 1000), interpolation=cv2.INTER_AREA)
    shipped_ms, segment_ms, reference_ms, unverified_ms = [], [], [], []
    with Analyzer(AnalyzeOptions(segmenter=SegmenterOptions(weights=args.weights), require_model=True)) as analyzer, \
            Analyzer(AnalyzeOptions(segmenter=SegmenterOptions(weights=args.reference), require_model=True)) as ref, \
            Analyzer(AnalyzeOptions(segmenter=SegmenterOptions(weights=args.weights, verify_lesions=False),
                                    require_model=True)) as unverified:
        analysis = analyzer.analyze(image)
        reference = ref.analyze(image)
        verified = analyzer.segmenter().verifier is not None
        if verified:
            unverified.analyze(image)
        for _ in range(args.runs):
            start = time.perf_counter()
            analysis = analyzer.analyze(image)
            shipped_ms.append((time.perf_counter() - start) * 1000)
            segment_ms.append(analysis.timings_ms["segment"])
            reference_ms.append(ref.analyze(image).timings_ms["segment"])
            if verified:
                unverified_ms.append(unverified.analyze(image).timings_ms["segment"])
    naive = build_model("Unet", "resnet34").eval()
    naive_ms = []
    for i in range(args.runs + 1):
        start = time.perf_counter()
        frame = load_image(image)
        x = cv2.resize(frame, (512, 512)).astype(np.float32) / 255.0
        x = (x - np.array([0.485, 0.456, 0.406], np.float32)) / np.array([0.229, 0.224, 0.225], np.float32)
        with torch.inference_mode():
            naive(torch.from_numpy(x.transpose(2, 0, 1)[None].copy())).argmax(1)
        if i:
            naive_ms.append((time.perf_counter() - start) * 1000)
    s50, s95 = percentiles(shipped_ms)
    n50, n95 = percentiles(naive_ms)
    print(f"1000x1000 photo, {args.runs} runs; shipped backends: {analysis.backends}")
    print(f"shipped analyze (all steps): p50 {s50:7.1f} ms  p95 {s95:7.1f} ms")
    print(f"naive fp32 R34 U-Net @512  : p50 {n50:7.1f} ms  p95 {n95:7.1f} ms")
    print(f"ratio naive / shipped at p50: {n50 / s50:.2f}x")
    g50, _ = percentiles(segment_ms)
    r50, _ = percentiles(reference_ms)
    print(f"model step: {analysis.backends['segment']} p50 {g50:.1f} ms; reference {reference.backends['segment']} "
          f"p50 {r50:.1f} ms; ratio shipped / reference {g50 / r50:.2f}x (<= 1: no slower)")
    if unverified_ms:
        u50, _ = percentiles(unverified_ms)
        candidates = analysis.segmentation.lesion_candidates
        print(f"lesion verifier: model step p50 {g50:.1f} ms with it, {u50:.1f} ms without ({len(candidates)} candidates "
              f"looked at); ratio {g50 / u50:.2f}x")


if __name__ == "__main__":
    main()
