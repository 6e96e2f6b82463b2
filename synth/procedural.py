"""Procedural blemish rendering (CPU, no weights) with a pixel-exact mask.

Every condition is a change in CIELAB, sized by its layout field and adapted to skin tone:
- redness raises a* in blotchy patches (and darkens a little, more on dark skin);
- acne papules are domes lit like the face (highlight towards the light, shadow away), with a
  red halo; pustules get a pale yellowish head;
- texture adds band-pass pore noise and enlarged dark pores;
- dryness desaturates, adds an ashy lift, and draws flakes with a crack pattern (Voronoi).
The mask is exactly the set of pixels whose rendered RGB moved by more than `change_threshold`;
every other pixel is copied from the clean face, so nothing outside the mask changes.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from scipy.spatial import cKDTree

from core.colour import rgb_to_lab
from core.labels import label_by_name
from synth.faces import SourceFace
from synth.masks import Layout, Lesion


@dataclass(frozen=True)
class ProceduralOptions:
    change_threshold: int = 3  # uint8 levels (any channel) that count as a change
    strength: float = 1.0  # global multiplier on every colour change


@dataclass
class Rendered:
    """image: RGB uint8 with blemishes; mask: uint8 class index per pixel (core.labels order)."""

    image: np.ndarray
    mask: np.ndarray


def render(face: SourceFace, layout: Layout, rng: np.random.Generator,
           options: ProceduralOptions | None = None) -> Rendered:
    """Draw `layout` on `face`. Same face, layout and generator state -> the same bytes."""
    options = options or ProceduralOptions()
    clean = face.image
    lab = rgb_to_lab(clean)
    tone = float(np.clip((face.regions.skin_lab_median[0] - 25.0) / 50.0, 0.0, 1.0))  # 1 light, 0 dark
    # 1. One Lab change per condition, in a fixed order (the generator is consumed in this order).
    deltas: dict[str, np.ndarray] = {}
    if layout.lesions:
        deltas["acne"] = _acne(lab.shape[:2], layout.lesions, face.light, tone, layout.severity["acne"], rng)
    if "redness" in layout.fields:
        deltas["redness"] = _redness(layout.fields["redness"], tone, layout.severity["redness"], rng)
    if "texture" in layout.fields:
        deltas["texture"] = _texture(layout.fields["texture"], tone, layout.severity["texture"], face.unit, rng)
    if "dryness" in layout.fields:
        deltas["dryness"] = _dryness(lab, layout.fields["dryness"], tone, layout.severity["dryness"], face.unit, rng)
    if not deltas:
        return Rendered(clean.copy(), np.zeros(clean.shape[:2], np.uint8))
    # 2. Apply, back to RGB uint8.
    skin = face.regions.skin.astype(np.float32)
    inside = (cv2.GaussianBlur(skin, (0, 0), 1.5) * skin)[..., None]  # never outside skin, soft at its edge
    deltas = {name: delta * inside for name, delta in deltas.items()}
    total = sum(deltas.values()) * options.strength
    rendered = cv2.cvtColor((lab + total).astype(np.float32), cv2.COLOR_LAB2RGB)
    rendered = np.clip(rendered * 255.0 + 0.5, 0, 255).astype(np.uint8)
    # 3. The mask: changed pixels, labelled by the condition that changed them most.
    changed = np.abs(rendered.astype(np.int16) - clean.astype(np.int16)).max(axis=2) > options.change_threshold
    names = list(deltas)
    strength = np.stack([np.linalg.norm(deltas[n], axis=2) for n in names])
    indices = np.array([label_by_name(n).index for n in names], np.uint8)
    mask = np.where(changed, indices[strength.argmax(axis=0)], 0).astype(np.uint8)
    image = np.where(changed[..., None], rendered, clean)
    return Rendered(image, mask)


def _acne(shape: tuple[int, int], lesions: list[Lesion], light: tuple[float, float], tone: float,
          severity: int, rng: np.random.Generator) -> np.ndarray:
    delta = np.zeros((*shape, 3), np.float32)
    lx, ly = light
    for lesion in lesions:
        r = lesion.radius
        half = int(np.ceil(4.5 * r)) + 1
        x0, x1 = max(0, int(lesion.x) - half), min(shape[1], int(lesion.x) + half + 1)
        y0, y1 = max(0, int(lesion.y) - half), min(shape[0], int(lesion.y) + half + 1)
        if x0 >= x1 or y0 >= y1:
            continue
        yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
        dx, dy = (xx - lesion.x) / r, (yy - lesion.y) / r
        d2 = dx * dx + dy * dy
        dome = np.exp(-d2)
        halo = np.exp(-d2 / 1.9**2)
        # Real papules are subtle: on ACNE04 photos (expert circles, 640 px) the lesion centre differs
        # from the skin around it by a* +1.8 and L* -2.6 at the median, a* +7 at the 90th percentile.
        # So contrast is drawn over a wide range, from barely visible to clearly inflamed; on dark
        # skin papules read darker and browner rather than pink.
        redness = rng.uniform(2, 11) * (0.45 + 0.55 * tone) * (0.85 + 0.1 * severity)
        darken = rng.uniform(1.5, 6.0) * (0.6 + 0.8 * (1 - tone))
        relief = rng.uniform(0.3, 1.0)  # how much the dome catches the light
        shade = -(-2 * dx * dome * lx + -2 * dy * dome * ly)  # facing the light -> brighter
        sx, sy = dx - 0.4 * lx, dy - 0.4 * ly
        specular = np.exp(-(sx * sx + sy * sy) / 0.3**2)
        window = delta[y0:y1, x0:x1]
        window[..., 0] += -halo * darken + relief * (shade * rng.uniform(4, 7) + specular * rng.uniform(2, 5))
        window[..., 1] += halo * redness
        window[..., 2] += halo * redness * 0.25
        if lesion.pustule:
            head = np.exp(-d2 / 0.45**2)
            window[..., 0] += head * rng.uniform(9, 15)
            window[..., 1] -= head * redness * 0.8
            window[..., 2] += head * rng.uniform(8, 14)
    return delta


def _redness(field: np.ndarray, tone: float, severity: int, rng: np.random.Generator) -> np.ndarray:
    blotches = cv2.resize(rng.standard_normal((48, 48)).astype(np.float32), field.shape[::-1],
                          interpolation=cv2.INTER_CUBIC)
    f = field * np.clip(0.8 + 0.25 * blotches, 0.3, 1.2)
    amount = (0.7 + 0.15 * severity) * rng.uniform(0.9, 1.1)
    delta = np.zeros((*field.shape, 3), np.float32)
    delta[..., 0] = -f * (1.5 + 4.5 * (1 - tone)) * amount
    delta[..., 1] = f * (9.0 + 3.0 * tone) * amount
    delta[..., 2] = f * (1.0 + 2.0 * (1 - tone)) * amount
    return delta


def _bandpass(shape: tuple[int, int], fine: float, coarse: float, rng: np.random.Generator) -> np.ndarray:
    noise = rng.standard_normal(shape).astype(np.float32)
    band = cv2.GaussianBlur(noise, (0, 0), fine) - cv2.GaussianBlur(noise, (0, 0), coarse)
    return band / max(float(band.std()), 1e-6)


def _texture(field: np.ndarray, tone: float, severity: int, unit: float, rng: np.random.Generator) -> np.ndarray:
    delta = np.zeros((*field.shape, 3), np.float32)
    scale = max(unit / 190.0, 0.5)  # pore sizes follow the face size (190 px eye distance at 512)
    pores = _bandpass(field.shape, 0.7 * scale, 2.0 * scale, rng)
    bumps = _bandpass(field.shape, 2.5 * scale, 6.0 * scale, rng)
    amount = 0.8 + 0.2 * severity
    relief = pores * 2.0 + bumps * 1.5
    # rough skin is also duller: a base darkening keeps the whole patch changed, not speckled
    delta[..., 0] = field * (relief - 3.5 - 0.6 * np.abs(relief)) * amount
    delta[..., 2] = field * 1.2 * amount
    # enlarged pores: dark dots, denser where the field is strong
    count = int(field.sum() * 0.012 / scale**2)
    if count:
        ys, xs = np.nonzero(field > 0.2)
        pick = rng.integers(0, len(ys), count)
        dots = np.zeros(field.shape, np.float32)
        dots[ys[pick], xs[pick]] = 1.0
        dots = cv2.GaussianBlur(dots, (0, 0), 0.8 * scale) * (2 * np.pi * (0.8 * scale) ** 2)
        delta[..., 0] -= np.clip(dots, 0, 1) * field * (8 + 4 * (1 - tone)) * amount
        delta[..., 1] += np.clip(dots, 0, 1) * field * 1.5
    return delta


def _dryness(lab: np.ndarray, field: np.ndarray, tone: float, severity: int, unit: float,
             rng: np.random.Generator) -> np.ndarray:
    delta = np.zeros((*field.shape, 3), np.float32)
    amount = 0.75 + 0.15 * severity
    # ashy, desaturated lift
    delta[..., 0] = field * (2.5 + 6.0 * (1 - tone)) * amount
    delta[..., 1] = -field * 0.35 * (lab[..., 1] - 2.0) * amount
    delta[..., 2] = -field * 0.35 * (lab[..., 2] - 4.0) * amount
    # flakes: Voronoi cells; borders are cracks, some cells lift as pale flakes
    ys, xs = np.nonzero(field > 0.05)
    if len(ys) == 0:
        return delta
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    cell = max(3.0, 0.045 * unit)
    n_seeds = max(4, int((y1 - y0) * (x1 - x0) / cell**2))
    seeds = np.column_stack([rng.uniform(y0, y1, n_seeds), rng.uniform(x0, x1, n_seeds)])
    lifted = rng.random(n_seeds) < 0.35
    grid = np.column_stack([ys, xs]).astype(np.float32)
    distances, nearest = cKDTree(seeds).query(grid, k=2)
    crack = np.clip(1.0 - 0.8 * (distances[:, 1] - distances[:, 0]), 0, 1)
    # only part of the network shows as cracks, as on real dry skin
    visible = cv2.resize(rng.random((12, 12)).astype(np.float32), field.shape[::-1], interpolation=cv2.INTER_CUBIC)
    crack *= np.clip((visible[ys, xs] - 0.45) * 3.0, 0, 1)
    f = field[ys, xs]
    delta[ys, xs, 0] += f * amount * (-crack * (3.5 + 3 * tone) + lifted[nearest[:, 0]] * (2.0 + 2.5 * (1 - tone)))
    return delta
