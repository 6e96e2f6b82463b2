"""Live filter per-frame time at 640x480: the live path against a naive full-frame version, same run.

Live path: tracked FaceMesh + one-euro smoothing, masks and filters inside the face box only.
Naive: per frame, full detection + static mesh, full-frame skin regions, guided filter over the
whole frame, then the same makeup. Frames: a CC0 portrait with a little simulated head motion.
Run: .venv/bin/python bench/bench_live.py [--frames 120]
"""

from __future__ import annotations

import argparse
import time

import cv2
import numpy as np
from common import ROOT, percentiles


def frames(count: int) -> list[np.ndarray]:
    from core.imageio import load_image

    portrait = load_image(ROOT / "data" / "examples" / "portrait-001.jpg")
    base = cv2.resize(portrait, (640, 640))[80:560]  # 640x480
    out = []
    for t in range(count):
        shift = np.float32([[1, 0, 6 * np.sin(t / 9)], [0, 1, 4 * np.cos(t / 13)]])
        out.append(cv2.warpAffine(base, shift, (640, 480), borderMode=cv2.BORDER_REFLECT))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=120)
    args = parser.parse_args()

    from core.detection import FaceDetector
    from core.filters import LiveFilter, LiveOptions, apply_makeup, builtin_presets
    from core.filters.masks import eye_unit
    from core.mesh import FaceMesher
    from core.regions import face_regions

    video = frames(args.frames)
    preset = builtin_presets()["soft glam"]
    live_ms = []
    with LiveFilter(LiveOptions(smooth=0.5, preset=preset)) as live:
        for i, frame in enumerate(video):
            start = time.perf_counter()
            live.process(frame, i / 30.0)
            live_ms.append((time.perf_counter() - start) * 1000)
    naive_ms = []
    with FaceDetector() as detector, FaceMesher() as mesher:
        for frame in video:
            start = time.perf_counter()
            face = detector.detect(frame)[0]
            landmarks = mesher.landmarks(frame, face)
            regions = face_regions(frame, landmarks)
            smoothed = cv2.ximgproc.guidedFilter(frame, frame, max(2, int(0.035 * eye_unit(landmarks))), 230.0)
            weight = (regions.skin * 0.42)[..., None]
            frame_out = (frame * (1 - weight) + smoothed * weight).astype(np.uint8)
            apply_makeup(frame_out, landmarks, preset, regions.skin)
            naive_ms.append((time.perf_counter() - start) * 1000)
    warm = slice(5, None)  # first frames include model warm-up
    lp50, lp95 = percentiles(live_ms[warm])
    np50, np95 = percentiles(naive_ms[warm])
    print(f"{args.frames} frames at 640x480 (smoothing 0.5 + soft glam makeup)")
    print(f"live path : p50 {lp50:6.1f} ms  p95 {lp95:6.1f} ms  ({1000 / lp50:.0f} fps)")
    print(f"naive     : p50 {np50:6.1f} ms  p95 {np95:6.1f} ms  ({1000 / np50:.0f} fps)")
    print(f"live is {np50 / lp50:.1f}x faster at p50")


if __name__ == "__main__":
    main()
