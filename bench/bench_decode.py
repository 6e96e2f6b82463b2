"""Decoding a phone-sized photo for analysis: `load_photo` (JPEG DCT scaling, then an area resize to
max_side) against a full decode followed by the same resize, in the same run.

The photos are a CC0 portrait enlarged to 3024x4032 (12 MP) and saved as a baseline and as a
progressive JPEG (quality 92), once with EXIF orientation 6 (stored sideways, as phones do).
Reports p50 per variant, the ratio, and how far the two results differ (mean and p99 grey levels).
Run: .venv/bin/python bench/bench_decode.py [--photo PATH] [--runs 15] [--max-side 1600]
"""

from __future__ import annotations

import argparse
import io
import time

import cv2
import numpy as np
from common import ROOT, percentiles
from PIL import Image


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photo", default=str(ROOT.parent / "shared" / "data" / "faces-cc0" / "001.jpg"))
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--max-side", type=int, default=1600)
    args = parser.parse_args()

    from core.imageio import load_image, load_photo

    big = Image.fromarray(cv2.resize(load_image(args.photo), (3024, 4032), interpolation=cv2.INTER_CUBIC))
    exif = Image.Exif()
    exif[0x0112] = 6
    variants = {}
    for name, image, options in (("baseline", big, {}), ("progressive", big, {"progressive": True}),
                                 ("sideways, EXIF 6", big.transpose(Image.Transpose.ROTATE_90), {"exif": exif.tobytes()})):
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=92, **options)
        variants[name] = buffer.getvalue()

    def full(data: bytes) -> np.ndarray:
        image = load_image(data)
        scale = args.max_side / max(image.shape[:2])
        size = (round(image.shape[1] * scale), round(image.shape[0] * scale))
        return cv2.resize(image, size, interpolation=cv2.INTER_AREA)

    print(f"12 MP JPEGs made from {args.photo}, to a {args.max_side} px long side, {args.runs} runs each")
    for name, data in variants.items():
        full_ms, photo_ms = [], []
        for _ in range(args.runs):  # alternated, so machine noise hits both alike
            start = time.perf_counter()
            expected = full(data)
            full_ms.append((time.perf_counter() - start) * 1000)
            start = time.perf_counter()
            photo, _ = load_photo(data, args.max_side)
            photo_ms.append((time.perf_counter() - start) * 1000)
        difference = np.abs(photo.astype(int) - expected)
        (f50, _), (p50, _) = percentiles(full_ms), percentiles(photo_ms)
        print(f"{name:<17} ({len(data) / 2**20:.1f} MB): full decode + resize {f50:6.1f} ms, load_photo {p50:6.1f} ms: "
              f"{f50 / p50:.1f}x; difference mean {difference.mean():.2f}, p99 {np.percentile(difference, 99):.0f} levels")


if __name__ == "__main__":
    main()
