"""Pictures of an analysis: condition masks with a legend, the zone map, and a one-image report card.

All functions take and return RGB uint8 HWC arrays.
"""

from __future__ import annotations

import textwrap
from functools import lru_cache

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from core.labels import CONDITIONS
from core.maskops import mask_bounds
from core.regions import ZONE_COLORS, ZONE_TITLES, FaceRegions

INK, MUTED, PAPER, GOOD, WARN = (33, 37, 41), (110, 117, 125), (250, 248, 245), (46, 160, 67), (214, 120, 0)


@lru_cache(maxsize=8)
def font(size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=size)


def mask_overlay(image: np.ndarray, label_map: np.ndarray | None, alpha: float = 0.55,
                 classes: tuple[str, ...] | None = None, skin: np.ndarray | None = None) -> np.ndarray:
    """Colour each condition pixel with its label colour; `classes` limits which ones are drawn.
    A thin outline of `skin` shows where the model looked."""
    out = image.copy()
    if label_map is not None:
        colours = {label.index: label.color for label in CONDITIONS if classes is None or label.name in classes}
        _tint(out, label_map, colours, alpha)
    if skin is not None:
        contours, _ = cv2.findContours(skin.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(out, contours, -1, (255, 255, 255), max(1, image.shape[1] // 500), cv2.LINE_AA)
    return out


def zone_overlay(image: np.ndarray, regions: FaceRegions, alpha: float = 0.45, labels: bool = True) -> np.ndarray:
    """Tint every zone with its colour and write its name inside it (see `zone_label_points`)."""
    out = image.copy()
    _tint(out, regions.zone_map, {i: ZONE_COLORS[n] for i, n in enumerate(regions.zone_names, 1)}, alpha)
    picture = Image.fromarray(out)
    if labels:
        draw = ImageDraw.Draw(picture)
        size = max(12, image.shape[1] // 45)
        for name, (x, y) in zone_label_points(regions).items():
            draw.text((x, y), ZONE_TITLES[name], fill=(255, 255, 255), font=font(size), anchor="mm",
                      stroke_width=max(1, size // 8), stroke_fill=INK)
    return np.asarray(picture)


def zone_label_points(regions: FaceRegions, min_share: float = 0.03) -> dict[str, tuple[float, float]]:
    """Where each zone's name goes: the zone pixel nearest its median (the median of a curved zone,
    a cheek seen from the side, can fall outside it). Zones under `min_share` of the skin (the far
    cheek of a face in profile) get no name: it would cover the zones beside them."""
    x, y, w, h = mask_bounds(regions.zone_map > 0)
    zones = regions.zone_map[y:y + h, x:x + w]
    total = np.count_nonzero(zones)
    points = {}
    for index, name in enumerate(regions.zone_names, start=1):
        ys, xs = np.nonzero(zones == index)
        if not len(xs) or len(xs) < min_share * total:
            continue
        nearest = np.argmin((xs - np.median(xs)) ** 2 + (ys - np.median(ys)) ** 2)
        points[name] = (float(xs[nearest] + x), float(ys[nearest] + y))
    return points


def _tint(out: np.ndarray, index_map: np.ndarray, colours: dict[int, tuple[int, int, int]], alpha: float):
    """Blend `colours[i]` into `out` (RGB uint8, in place) where index_map == i, inside the
    bounding box of the coloured pixels only. Returns that box's top-left corner."""
    lut = np.zeros((256, 3), np.uint8)
    chosen = np.zeros(256, bool)
    for index, colour in colours.items():
        lut[index], chosen[index] = colour, True
    x, y, w, h = mask_bounds(chosen[index_map])
    if w:
        indices = index_map[y:y + h, x:x + w]
        region = out[y:y + h, x:x + w]
        blended = cv2.addWeighted(region, 1 - alpha, lut[indices], alpha, 0)
        np.copyto(region, blended, where=chosen[indices][..., None])
    return x, y


def with_legend(image: np.ndarray, items: list[tuple[str, tuple[int, int, int]]]) -> np.ndarray:
    """Append a legend strip (colour swatch + name per item) under `image`."""
    size = max(14, image.shape[1] // 40)
    strip = Image.new("RGB", (image.shape[1], int(size * 2.2)), PAPER)
    draw = ImageDraw.Draw(strip)
    x = size // 2
    for name, colour in items:
        draw.rectangle([x, size * 0.6, x + size, size * 1.6], fill=colour)
        draw.text((x + size * 1.3, size * 1.1), name, fill=INK, font=font(size), anchor="lm")
        x += int(size * 1.8 + draw.textlength(name, font=font(size)))
    return np.vstack([image, np.asarray(strip)])


def condition_legend() -> list[tuple[str, tuple[int, int, int]]]:
    return [(label.title, label.color) for label in CONDITIONS]


def face_crop_box(analysis, margin: float = 1.5) -> tuple[int, int, int, int]:
    """Square box around the analysed face (the whole image in whole-frame mode)."""
    height, width = analysis.image.shape[:2]
    if analysis.face_index is None:
        return 0, 0, width, height
    x0, y0, x1, y1 = analysis.faces[analysis.face_index].box
    side = max(x1 - x0, y1 - y0) * margin
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2 - 0.05 * side
    side = min(side, width, height)
    left = int(np.clip(cx - side / 2, 0, width - side))
    top = int(np.clip(cy - side / 2, 0, height - side))
    return left, top, left + int(side), top + int(side)


@lru_cache(maxsize=4096)
def _rendered(text: str, size: int, anchor: str) -> tuple[Image.Image | None, tuple[int, int]]:
    """`text` in the default font at `size` as an "L" coverage mask and its offset from the anchor
    point: a card repeats most of its words from one analysis to the next."""
    face = font(size)
    left, top, right, bottom = face.getbbox(text, anchor=anchor)
    if right <= left or bottom <= top:
        return None, (0, 0)
    mask = Image.new("L", (right - left, bottom - top), 0)
    ImageDraw.Draw(mask).text((-left, -top), text, fill=255, font=face, anchor=anchor)
    return mask, (left, top)


def write(picture: Image.Image, xy: tuple[float, float], text: str, fill: tuple[int, int, int], size: int,
          anchor: str = "la") -> None:
    """draw.text(xy, text, fill, font(size), anchor) with the glyphs rendered once per text and size."""
    for k, line in enumerate(text.split("\n")):  # lines spaced as ImageDraw spaces them (4 px apart)
        mask, (dx, dy) = _rendered(line, size, anchor)
        if mask is not None:
            y = xy[1] + k * (font(size).getbbox("A")[3] + 4)
            picture.paste(fill, (int(xy[0]) + dx, int(y) + dy), mask)


def report_card(analysis, width: int = 1280, zones: np.ndarray | None = None) -> np.ndarray:
    """One picture that sums up an analysis: conditions, zones, tone, quality, scores, guidance.
    `zones`: `zone_overlay(analysis.image, analysis.regions)` when the caller has it already."""
    from core.guidance import disclaimer

    report = analysis.report
    left, top, right, bottom = face_crop_box(analysis)
    panel = (width - 80) // 3
    seg = analysis.segmentation
    cond = mask_overlay(analysis.image, seg.label_map if seg else None, skin=analysis.regions.skin)
    cond = cv2.resize(cond[top:bottom, left:right], (panel, panel), interpolation=cv2.INTER_AREA)
    zones = zone_overlay(analysis.image, analysis.regions) if zones is None else zones
    zones = cv2.resize(zones[top:bottom, left:right], (panel, panel), interpolation=cv2.INTER_AREA)

    wrap = max(40, int(width / 11))
    advice_lines = [w for line in analysis.guidance for w in (textwrap.wrap("- " + line, wrap) or [""])]
    height = 90 + panel + 60 + 30 * len(advice_lines) + 110
    card = Image.new("RGB", (width, height), PAPER)
    draw = ImageDraw.Draw(card)
    write(card, (20, 22), "GlowAI skin report", INK, 34)
    write(card, (width - 20, 34), "cosmetic description, not a diagnosis", MUTED, 18, "rm")

    y = 80
    card.paste(Image.fromarray(cond), (20, y))
    card.paste(Image.fromarray(zones), (40 + panel, y))
    draw.text((20, y + panel + 8), "Conditions" if seg else "Skin analysed (no blemish model installed)",
              fill=INK, font=font(18))
    lx = 20 + (100 if seg else panel)
    if seg:
        for label in CONDITIONS:
            draw.rectangle([lx, y + panel + 12, lx + 12, y + panel + 24], fill=label.color)
            write(card, (lx + 16, y + panel + 9), label.title, INK, 14)
            lx += 24 + int(draw.textlength(label.title, font=font(14)))
    write(card, (40 + panel, y + panel + 8), "Zones", INK, 18)

    # right column: tone, quality, scores
    x = 60 + 2 * panel
    tone = report["skin_tone"]
    lab = np.array([[tone["lab"]]], np.float32)
    swatch = tuple(int(v) for v in np.clip(cv2.cvtColor(lab, cv2.COLOR_LAB2RGB)[0, 0] * 255, 0, 255))
    write(card, (x, y), "Skin tone", INK, 22)
    draw.rounded_rectangle([x, y + 34, x + 60, y + 94], 8, fill=swatch)
    write(card, (x + 74, y + 40), tone["category"].capitalize(), INK, 20)
    write(card, (x + 74, y + 68), f"ITA {tone['ita']:.0f} deg", MUTED, 16)
    y2 = y + 112
    write(card, (x, y2), "Photo quality", INK, 22)
    y2 += 32
    for check in report["quality"]:
        colour, mark = (GOOD, "ok") if check["ok"] else (WARN, "check")
        write(card, (x, y2), f"{check['name'].replace('_', ' ')}", INK, 16)
        write(card, (x + panel - 10, y2), f"{check['value']:g}  {mark}", colour, 16, "ra")
        y2 += 22
    y2 += 10
    write(card, (x, y2), "Severity by zone (0-100)", INK, 22)
    y2 += 32
    if report["conditions"] is None:
        write(card, (x, y2), "Not measured: no blemish model\nis installed.", MUTED, 16)
    else:
        col = (panel - 110) // len(CONDITIONS)
        for i, label in enumerate(CONDITIONS):
            write(card, (x + 110 + i * col, y2), label.title[:7], MUTED, 14)
        y2 += 20
        for name, zone in report["zones"].items():
            write(card, (x, y2), ZONE_TITLES[name], INK, 15)
            for i, label in enumerate(CONDITIONS):
                value = zone["conditions"][label.name]["severity"]
                cx = x + 110 + i * col
                draw.rectangle([cx, y2 + 3, cx + int((col - 8) * value / 100), y2 + 15], fill=label.color)
                write(card, (cx + col - 8, y2), str(value), INK, 13, "ra")
            y2 += 22

    y3 = 80 + panel + 50
    write(card, (20, y3), "Guidance", INK, 22)
    y3 += 32
    for line in advice_lines:
        write(card, (20, y3), line, INK, 17)
        y3 += 30
    y3 += 8
    for line in textwrap.wrap(disclaimer(), wrap):
        write(card, (20, y3), line, MUTED, 15)
        y3 += 22
    backends = ", ".join(f"{k}: {v}" for k, v in analysis.backends.items())
    write(card, (20, height - 26), f"{backends}  |  {analysis.timings_ms['total']:.0f} ms", MUTED, 13)
    return np.asarray(card)

