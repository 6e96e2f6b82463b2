"""Contact sheet of real photos with two models' lesion predictions beside the expert circles.

Reads `glowai eval acne --json` results (per_image holds each photo's predicted centres and the
expert circles), so nothing is re-run. One row per photo: model A | model B; green circles are the
expert lesions, crosses the lesions a model found (filled green dot when a cross matched).

    .venv/bin/python scripts/acne_sheet.py --data ../shared/data/acne04-dev \
        runs/v2/eval-acne-v1.json runs/v2/eval-acne.json --n 10 --out runs/v2/acne-sheet.png
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.files import write_png  # noqa: E402
from core.imageio import load_image  # noqa: E402

TILE = 420


def draw(image: np.ndarray, entry: dict, title: str) -> np.ndarray:
    scale = TILE / max(image.shape[:2])
    tile = cv2.resize(image, (round(image.shape[1] * scale), round(image.shape[0] * scale)), interpolation=cv2.INTER_AREA)
    for x, y, r in entry.get("circles", []):
        cv2.circle(tile, (round(x * scale), round(y * scale)), max(3, round(r * scale)), (40, 220, 60), 1, cv2.LINE_AA)
    for x, y in entry.get("points", []):
        cv2.drawMarker(tile, (round(x * scale), round(y * scale)), (255, 40, 40), cv2.MARKER_TILTED_CROSS, 8, 2)
    label = (f"{title}: found {entry.get('matched', '?')} of {entry.get('truth', '?')}, "
             f"false {entry.get('false_positives', '?')}")
    cv2.rectangle(tile, (0, 0), (tile.shape[1], 22), (0, 0, 0), -1)
    cv2.putText(tile, label, (6, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
    return tile


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs=2, type=Path, help="two `glowai eval acne --json` files: A then B")
    parser.add_argument("--data", required=True, type=Path, help="the ACNE04-like folder they were run on")
    parser.add_argument("--n", type=int, default=10, help="photos (spread over the grades, annotated only)")
    parser.add_argument("--out", required=True, type=Path)
    args = parser.parse_args(argv)
    a, b = (json.loads(p.read_text()) for p in args.results)
    names = sorted(n for n, e in b["per_image"].items() if "truth" in e and n in a["per_image"])
    if not names:
        print("no annotated photo in common", file=sys.stderr)
        return 2
    picks = [names[i] for i in np.linspace(0, len(names) - 1, min(args.n, len(names))).round().astype(int)]
    rows = []
    for name in picks:
        image = load_image(args.data / "images" / name)
        left, right = draw(image, a["per_image"][name], a["model"]), draw(image, b["per_image"][name], b["model"])
        gap = np.full((left.shape[0], 8, 3), 255, np.uint8)
        row = np.hstack([left, gap, right])
        caption = np.full((20, row.shape[1], 3), 255, np.uint8)
        cv2.putText(caption, name, (6, 15), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
        rows.append(np.vstack([caption, row]))
    width = max(r.shape[1] for r in rows)
    sheet = np.vstack([np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows])
    write_png(args.out, sheet)
    print(f"wrote {args.out} ({len(picks)} photos)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
