"""Before/after sheet: 6 faces (light to dark skin) x 3 presets, with skin smoothing 0.5.

Run: .venv/bin/python scripts/filter_sheet.py [--faces ../shared/data/faces-cc0] [--out out/filter_sheet.png]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.filters import apply_makeup, builtin_presets, smooth_skin  # noqa: E402
from core.filters.masks import eye_unit  # noqa: E402
from core.overlays import face_crop_box, font  # noqa: E402
from core.pipeline import AnalyzeOptions, Analyzer  # noqa: E402

FACES = ("001", "039", "014", "028", "006", "057")  # very light ... dark, as measured by ITA
PRESETS = ("natural", "soft glam", "bold lip")
TILE = 240


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faces", default=str(ROOT.parent / "shared" / "data" / "faces-cc0"))
    parser.add_argument("--out", default=str(ROOT / "out" / "filter_sheet.png"))
    args = parser.parse_args()
    sheet = Image.new("RGB", (TILE * (1 + len(PRESETS)), 30 + TILE * len(FACES)), (250, 248, 245))
    draw = ImageDraw.Draw(sheet)
    for column, title in enumerate(("before",) + PRESETS):
        draw.text((column * TILE + 8, 7), title, fill=(33, 37, 41), font=font(16))
    with Analyzer(AnalyzeOptions(segment=False)) as analyzer:
        for row, name in enumerate(FACES):
            analysis = analyzer.analyze(Path(args.faces) / f"{name}.jpg")
            image, landmarks, skin = analysis.image, analysis.landmarks, analysis.regions.skin
            left, top, right, bottom = face_crop_box(analysis, margin=1.3)
            smoothed = smooth_skin(image, skin, landmarks, eye_unit(landmarks), 0.5)
            tiles = [image] + [apply_makeup(smoothed, landmarks, builtin_presets()[p], skin) for p in PRESETS]
            for column, tile in enumerate(tiles):
                crop = cv2.resize(tile[top:bottom, left:right], (TILE, TILE), interpolation=cv2.INTER_AREA)
                sheet.paste(Image.fromarray(crop), (column * TILE, 30 + row * TILE))
            tone = analysis.report["skin_tone"]["category"]
            draw.text((6, 30 + row * TILE + 6), f"{name} {tone}", fill=(255, 255, 255), font=font(14),
                      stroke_width=2, stroke_fill=(0, 0, 0))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    sheet.save(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
