"""Contact sheet of a synthetic dataset: clean | generated | mask overlay, one row per sample."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw

from core.errors import GlowAIError
from core.labels import CONDITIONS
from core.overlays import font

TILE = 200


def contact_sheet(folder: Path, count: int = 24, columns: int = 2) -> np.ndarray:
    """RGB uint8 picture of `count` samples spread evenly over the manifest (by id)."""
    folder = Path(folder)
    manifest_path = folder / "manifest.parquet"
    if not manifest_path.is_file():
        raise GlowAIError(f"{folder}: no manifest.parquet; run `glowai synth` first")
    manifest = pd.read_parquet(manifest_path)
    if manifest.empty:
        raise GlowAIError(f"{folder}: the manifest is empty")
    picks = manifest.iloc[np.linspace(0, len(manifest) - 1, min(count, len(manifest))).round().astype(int)]
    rows = -(-len(picks) // columns)
    cell_w, cell_h = 3 * TILE + 20, TILE + 26
    sheet = Image.new("RGB", (columns * cell_w, rows * cell_h), (250, 248, 245))
    draw = ImageDraw.Draw(sheet)
    colours = np.zeros((len(CONDITIONS) + 1, 3), np.uint8)
    for label in CONDITIONS:
        colours[label.index] = label.color
    for n, (_, row) in enumerate(picks.iterrows()):
        clean = np.asarray(Image.open(folder / row["clean"]).convert("RGB"))
        image = np.asarray(Image.open(folder / row["image"]).convert("RGB"))
        mask = np.asarray(Image.open(folder / row["mask"]))
        overlay = image.copy()
        inside = mask > 0
        overlay[inside] = (0.45 * image[inside] + 0.55 * colours[mask[inside]]).astype(np.uint8)
        x, y = (n % columns) * cell_w, (n // columns) * cell_h
        for i, tile in enumerate((clean, image, overlay)):
            sheet.paste(Image.fromarray(tile).resize((TILE, TILE), Image.LANCZOS), (x + i * TILE, y + 22))
        caption = f"{row['id']}  {row['tone']}  {row['severity']}  dE {row['qc_delta_e']:.1f}"
        draw.text((x + 2, y + 4), caption, fill=(33, 37, 41), font=font(13))
    return np.asarray(sheet)
