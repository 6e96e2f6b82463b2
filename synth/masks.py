"""Lesion layouts: where each condition goes on a face, as soft intensity fields, seeded.

A layout is drawn inside the skin of a `SourceFace`, away from eyes, brows and lips, in the
zones where each condition usually shows:
- acne: small round papules and pustules in clusters on cheeks, forehead, chin and jaw;
- redness: diffuse blotchy patches on cheeks and nose;
- texture: rough, enlarged-pore areas on cheeks, nose and forehead;
- dryness: flaky patches on cheeks, forehead, chin and around the nose.
Severity 0-3 sets lesion count and patch area. The same generator state gives the same layout.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from core.regions import ZONES
from synth.faces import SourceFace

SEVERITIES = (0, 1, 2, 3)
ZONE_WEIGHTS: dict[str, dict[str, float]] = {  # condition -> zone -> relative preference
    "acne": {"forehead": 1.0, "left_cheek": 1.2, "right_cheek": 1.2, "nose": 0.2, "chin": 1.3},
    "redness": {"forehead": 0.15, "left_cheek": 1.0, "right_cheek": 1.0, "nose": 0.9, "chin": 0.25},
    "texture": {"forehead": 0.6, "left_cheek": 1.0, "right_cheek": 1.0, "nose": 0.9, "chin": 0.3},
    "dryness": {"forehead": 0.8, "left_cheek": 1.0, "right_cheek": 1.0, "nose": 0.5, "chin": 0.7},
}
ACNE_COUNT = {0: (1, 3), 1: (4, 10), 2: (10, 22), 3: (22, 45)}  # lesions per face
PATCH_AREA = {0: (0.01, 0.03), 1: (0.04, 0.09), 2: (0.09, 0.18), 3: (0.18, 0.32)}  # fraction of allowed skin


@dataclass(frozen=True)
class LayoutOptions:
    margin: float = 0.09  # distance kept from eyes, brows and lips, in eye-distance units
    acne_radius: tuple[float, float] = (0.01, 0.04)  # papule radius range, eye-distance units


@dataclass
class Lesion:
    """One acne lesion: centre (x, y) and radius in pixels; pustules have a pale head."""

    x: float
    y: float
    radius: float
    pustule: bool


@dataclass
class Layout:
    """fields: condition -> float32 HxW intensity in [0, 1] (0 = untouched). acne lesions are
    listed individually (their field is derived from them). severity: condition -> 0-3."""

    fields: dict[str, np.ndarray]
    severity: dict[str, int]
    lesions: list[Lesion] = field(default_factory=list)


def allowed_skin(face: SourceFace, options: LayoutOptions) -> np.ndarray:
    """Skin at least `margin` away from eyes, brows and lips."""
    parts = np.zeros(face.regions.skin.shape, np.uint8)
    for name in ("eyes", "brows", "lips"):
        parts |= face.regions.parts[name].astype(np.uint8)
    distance = cv2.distanceTransform(1 - parts, cv2.DIST_L2, 5)
    return face.regions.skin & (distance > options.margin * face.unit)


def zone_weights(face: SourceFace, condition: str, allowed: np.ndarray) -> np.ndarray:
    weights = np.zeros(allowed.shape, np.float32)
    for index, name in enumerate(ZONES, start=1):
        weights[face.regions.zone_map == index] = ZONE_WEIGHTS[condition][name]
    return weights * allowed


def smooth_noise(shape: tuple[int, int], cells: int, rng: np.random.Generator) -> np.ndarray:
    """Smooth random field in [0, 1]: `cells` x `cells` Gaussian noise, upsampled bicubically."""
    coarse = rng.standard_normal((cells, cells)).astype(np.float32)
    field_ = cv2.resize(coarse, shape[::-1], interpolation=cv2.INTER_CUBIC)
    field_ -= field_.min()
    return field_ / max(float(field_.max()), 1e-6)


def patch_field(face: SourceFace, condition: str, severity: int, allowed: np.ndarray,
                rng: np.random.Generator, cells: int = 9, softness: float = 0.04) -> np.ndarray:
    """Blotchy patches covering a severity-dependent share of the allowed skin, soft-edged."""
    weights = zone_weights(face, condition, allowed)
    score = smooth_noise(allowed.shape, cells, rng) * 0.6 + smooth_noise(allowed.shape, cells * 3, rng) * 0.4
    score = score * np.sqrt(weights)
    low, high = PATCH_AREA[severity]
    share = rng.uniform(low, high)
    candidates = score[weights > 0]
    if candidates.size == 0:
        return np.zeros(allowed.shape, np.float32)
    threshold = np.quantile(candidates, 1.0 - share)
    hard = ((score > threshold) & allowed).astype(np.float32)
    sigma = max(1.0, softness * face.unit)
    soft = cv2.GaussianBlur(hard, (0, 0), sigma)
    return (np.clip(soft * 1.6 - 0.3, 0, 1) * allowed).astype(np.float32)


def acne_lesions(face: SourceFace, severity: int, allowed: np.ndarray, rng: np.random.Generator,
                 options: LayoutOptions) -> list[Lesion]:
    """Clusters of papules: cluster centres drawn by zone preference, lesions scattered around them."""
    weights = zone_weights(face, "acne", allowed).ravel()
    if weights.sum() == 0:
        return []
    count = int(rng.integers(ACNE_COUNT[severity][0], ACNE_COUNT[severity][1] + 1))
    clusters = max(1, int(round(count / rng.uniform(3, 6))))
    width = allowed.shape[1]
    centres = rng.choice(weights.size, size=clusters, p=weights / weights.sum())
    lesions: list[Lesion] = []
    attempts = 0
    while len(lesions) < count and attempts < count * 20:
        attempts += 1
        centre = centres[rng.integers(clusters)]
        cy, cx = divmod(int(centre), width)
        x = cx + rng.normal(0, 0.18 * face.unit)
        y = cy + rng.normal(0, 0.18 * face.unit)
        radius = rng.uniform(*options.acne_radius) * face.unit
        xi, yi = int(round(x)), int(round(y))
        if not (0 <= yi < allowed.shape[0] and 0 <= xi < width) or not allowed[yi, xi]:
            continue
        if any((les.x - x) ** 2 + (les.y - y) ** 2 < (les.radius + radius) ** 2 for les in lesions):
            continue  # papules do not overlap
        lesions.append(Lesion(float(x), float(y), float(radius), bool(rng.random() < 0.3)))
    return lesions


def sample_layout(face: SourceFace, severity: dict[str, int], rng: np.random.Generator,
                  options: LayoutOptions | None = None) -> Layout:
    """A layout with the given severity (0-3) per condition; conditions not named are absent."""
    options = options or LayoutOptions()
    for condition, level in severity.items():
        if condition not in ZONE_WEIGHTS:
            raise ValueError(f"unknown condition {condition!r}; valid: {', '.join(ZONE_WEIGHTS)}")
        if level not in SEVERITIES:
            raise ValueError(f"severity {level} for {condition}; valid: 0-3")
    allowed = allowed_skin(face, options)
    fields: dict[str, np.ndarray] = {}
    lesions: list[Lesion] = []
    for condition in ZONE_WEIGHTS:  # fixed order: the same seed gives the same layout
        if condition not in severity:
            continue
        level = severity[condition]
        if condition == "acne":
            lesions = acne_lesions(face, level, allowed, rng, options)
        elif condition == "redness":
            fields[condition] = patch_field(face, condition, level, allowed, rng, cells=7, softness=0.08)
        elif condition == "texture":
            fields[condition] = patch_field(face, condition, level, allowed, rng, cells=8, softness=0.05)
        else:
            fields[condition] = patch_field(face, condition, level, allowed, rng, cells=11, softness=0.025)
    return Layout(fields, dict(severity), lesions)


def layout_target(layout: Layout, shape: tuple[int, int], threshold: float = 0.3) -> np.ndarray:
    """The layout as a uint8 class map (core.labels order): where a generator should paint what.

    Patch fields above `threshold`, acne lesions as disks of 1.6 radii; later conditions win.
    """
    from core.labels import label_by_name

    target = np.zeros(shape, np.uint8)
    for condition, field_ in layout.fields.items():
        target[field_ > threshold] = label_by_name(condition).index
    for lesion in layout.lesions:
        cv2.circle(target, (int(round(lesion.x)), int(round(lesion.y))), max(1, int(round(1.6 * lesion.radius))),
                   label_by_name("acne").index, -1)
    return target


def layout_from_drawing(face: SourceFace, painted: dict[str, np.ndarray], severity: int, rng: np.random.Generator,
                        options: LayoutOptions | None = None) -> Layout:
    """A layout from hand-painted areas (condition -> bool mask at the face's size).

    Patch conditions fill their painted area (soft-edged, never beyond it, kept on allowed skin);
    acne scatters papules inside it, as many as `severity` asks for. The same generator state gives the same layout.
    """
    options = options or LayoutOptions()
    if severity not in SEVERITIES:
        raise ValueError(f"severity {severity}; valid: 0-3")
    allowed = allowed_skin(face, options)
    fields: dict[str, np.ndarray] = {}
    lesions: list[Lesion] = []
    for condition in ZONE_WEIGHTS:  # fixed order, as in sample_layout
        if condition not in painted:
            continue
        mask = painted[condition]
        if mask.shape != allowed.shape or mask.dtype != bool:
            raise ValueError(f"painted {condition!r} must be a bool mask of shape {allowed.shape}, got {mask.shape} {mask.dtype}")
        inside = allowed & mask
        if condition == "acne":
            lesions = acne_lesions(face, severity, inside, rng, options)
        else:
            # soft towards the middle, zero from the painted edge outwards (blur is 0.5 on the edge)
            soft = cv2.GaussianBlur(inside.astype(np.float32), (0, 0), max(1.0, 0.04 * face.unit))
            fields[condition] = (np.clip(soft * 2.0 - 1.0, 0, 1) * inside).astype(np.float32)
    return Layout(fields, {condition: severity for condition in painted}, lesions)
