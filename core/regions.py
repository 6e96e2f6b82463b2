"""Face regions: a skin mask and five zones, from face-mesh landmarks and a per-face skin-colour model.

The skin mask is the face oval minus eyes, brows, lips and nostrils, intersected with a colour
model fitted to this face's own cheek and forehead pixels, which drops hair, glasses and beards
over the skin. In a ring around each eye the mesh alone decides (shadows, dark circles and
eyeshadow are skin) unless the ring is dark like a lens. Zones come from the mesh triangles, each
assigned once to a zone on a canonical frontal face, so they follow the face on 3/4 views.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import cv2
import numpy as np

from core.colour import rgb_to_lab
from core.maskops import (
    dilate,
    erode,
    fill_small_holes,
    hull,
    keep_components_touching,
    open_mask,
    polygon,
    polygon_dilated,
)
from core.mesh import topology
from core.profile import ProfileOptions, widen_for_profile
from core.skin_colour import colour_ok, fit_skin_colour, mahalanobis2

ZONES: tuple[str, ...] = ("forehead", "left_cheek", "right_cheek", "nose", "chin")
"""Zone names; pixel value i + 1 of `FaceRegions.zone_map` is ZONES[i]. Sides are the subject's own."""

ZONE_TITLES = {"forehead": "Forehead", "left_cheek": "Left cheek", "right_cheek": "Right cheek",
               "nose": "Nose", "chin": "Chin", "whole_frame": "Whole frame"}
ZONE_COLORS = {"forehead": (255, 209, 102), "left_cheek": (6, 214, 160), "right_cheek": (17, 138, 178),
               "nose": (239, 71, 111), "chin": (155, 93, 229), "whole_frame": (200, 200, 200)}


@dataclass(frozen=True)
class RegionOptions:
    """Skin-mask settings. Distances are in eye-distance units (outer eye corners), so they scale
    with the face. Defaults were tuned on the CelebAMask-HQ dev subset that `glowai eval regions`
    also reports on (the 2026-12 changes moved both halves of it alike: even 0.856, odd 0.853)."""

    # envelope: the mesh oval, raised at the forehead and grown outwards; colour decides inside it
    forehead_extension: float = 0.2  # fraction of face height added above the mesh forehead
    oval_margin: float = 0.03
    # margins around the parts that are never skin (negative: the mesh contours run wide of them)
    eye_margin: float = 0.0
    brow_margin: float = -0.01
    lip_margin: float = 0.0
    # colour model fitted to this face's own skin
    use_colour_model: bool = True
    colour_threshold: float = 5.0  # Mahalanobis distance in a*b* that still counts as skin
    # the same, beyond the mesh oval (hair, background). 3.0 until 2026-12-06 cut the upper forehead where it
    # is browner than the cheeks the model is fitted on; 4.0: ACNE04-dev lesion centres on skin 93.3 -> 94.1 %
    # (scripts/skin_coverage.py), CelebAMask skin IoU 0.8538 either way (3 photos 0.02+ worse, 4 better)
    extension_threshold: float = 4.0
    shadow_floor: float = 0.25  # darkest skin kept, as a fraction of the median skin lightness
    # contrast model: Lab histograms of this face's skin against the ring of hair/background around it
    contrast_model: bool = True
    prior_inside: float = 0.95  # prior probability of skin inside the mesh oval
    prior_outside: float = 0.5  # ... and in the envelope beyond it
    prior_forehead: float = 0.5  # ... and on the forehead, where fringes hang
    # a ring this wide around the eyes where the mesh alone decides: under-eye shadows, dark
    # circles and eyeshadow are skin, and the colour model would cut them out
    eye_ring: float = 0.15
    eye_ring_dark: float = 0.6  # ... unless its median lightness is below this fraction of the skin's (sunglasses)
    # nostrils: pixels under the nose tip darker than this fraction of the median skin lightness
    nostril_dark: float = 0.5
    nostril_margin: float = 0.0
    # a head turned to the side: the envelope grows beyond the mesh oval (see core.profile)
    profile: ProfileOptions = field(default_factory=ProfileOptions)
    # the masks are worked out on the face downscaled so its eye distance is this many pixels, then
    # scaled back, when the face is over 1.25x that (0: always at full resolution); a mask edge moves
    # by about a pixel of that scale, and a large photo costs what a small one does
    # (bench/bench_analyze.py; `glowai eval regions` on CelebAMask and on a 2x copy of it)
    work_unit: float = 130.0


@dataclass
class FaceRegions:
    """Masks in pixels of the analysed image. skin: bool HxW. zone_map: uint8 HxW, 0 = not skin,
    i + 1 = `zone_names[i]`. parts: bool HxW masks of eyes, brows, lips and nostrils."""

    skin: np.ndarray
    zone_map: np.ndarray
    zone_names: tuple[str, ...]
    parts: dict[str, np.ndarray] = field(default_factory=dict)
    backend: str = "mesh+colour"
    skin_lab_median: tuple[float, float, float] = (0.0, 0.0, 0.0)

    def zone_mask(self, name: str) -> np.ndarray:
        return self.zone_map == self.zone_names.index(name) + 1


def face_regions(image: np.ndarray, landmarks: np.ndarray, options: RegionOptions | None = None) -> FaceRegions:
    """Skin mask and zones of one face.

    Args:
        image: RGB uint8 HWC.
        landmarks: (478, 2+) float mesh landmarks in image pixels (see core.mesh).
    """
    options = options or RegionOptions()
    topo = topology()
    contours = topo["contours"]
    height, width = image.shape[:2]
    xy = landmarks[:, :2].astype(np.float64)
    unit = float(np.linalg.norm(xy[263] - xy[33]))  # outer eye-corner distance in pixels

    # 1. Region of interest around the face, so every mask op runs on the face only.
    oval = widen_for_profile(_extended_oval(xy, contours["face_oval"], options.forehead_extension), landmarks,
                             options.profile)
    pad = 4 + (options.oval_margin + 0.4) * unit
    x0, y0 = np.floor(np.maximum(oval.min(0) - pad, 0)).astype(int)
    x1, y1 = np.ceil(np.minimum(oval.max(0) + pad, [width, height])).astype(int)
    if x1 - x0 < 8 or y1 - y0 < 8:
        return FaceRegions(np.zeros((height, width), bool), np.zeros((height, width), np.uint8), ZONES)
    roi = image[y0:y1, x0:x1]
    local = xy - np.array([x0, y0], dtype=np.float64)
    oval = oval - np.array([x0, y0], dtype=np.float64)
    # less than a 20 % shrink saves little time and would still move the edges: full resolution then
    scale = options.work_unit / unit if 0 < options.work_unit and unit > 1.25 * options.work_unit else 1.0
    if scale < 1.0:  # pixel centres map onto pixel centres
        small = (max(8, round(roi.shape[1] * scale)), max(8, round(roi.shape[0] * scale)))
        sx, sy = small[0] / roi.shape[1], small[1] / roi.shape[0]
        to_small = np.array([sx, sy])
        skin, zone_map, parts, skin_lab = _roi_masks(cv2.resize(roi, small, interpolation=cv2.INTER_AREA),
                                                     (local + 0.5) * to_small - 0.5, (oval + 0.5) * to_small - 0.5,
                                                     unit * (sx + sy) / 2, contours, options)
        size = roi.shape[1::-1]
        skin = cv2.resize(skin.astype(np.uint8) * 255, size, interpolation=cv2.INTER_LINEAR) >= 128
        parts = {name: cv2.resize(mask.astype(np.uint8) * 255, size, interpolation=cv2.INTER_LINEAR) >= 128
                 for name, mask in parts.items()}
        for mask in parts.values():  # the smoothed edge never reaches into an eye, brow, lip or nostril
            skin &= ~mask
        zone_map = cv2.resize(zone_map, size, interpolation=cv2.INTER_NEAREST)
        zone_map[~skin] = 0
        zone_map = _grow_zones(zone_map, skin)
    else:
        skin, zone_map, parts, skin_lab = _roi_masks(roi, local, oval, unit, contours, options)

    full_skin = np.zeros((height, width), bool)
    full_skin[y0:y1, x0:x1] = skin
    full_zones = np.zeros((height, width), np.uint8)
    full_zones[y0:y1, x0:x1] = zone_map
    full_parts = {}
    for name, mask in parts.items():
        full = np.zeros((height, width), bool)
        full[y0:y1, x0:x1] = mask
        full_parts[name] = full
    return FaceRegions(full_skin, full_zones, ZONES, full_parts, "mesh+colour" if options.use_colour_model else "mesh",
                       skin_lab)


def _roi_masks(roi: np.ndarray, local: np.ndarray, oval: np.ndarray, unit: float, contours: dict,
               options: RegionOptions) -> tuple[np.ndarray, np.ndarray, dict, tuple[float, float, float]]:
    """Steps 2-4 of `face_regions` inside the face's region of interest (landmarks `local` and the
    envelope `oval` in its pixels, `unit` the eye distance there): skin, zone map, parts, skin Lab median."""
    shape = roi.shape[:2]

    # 2. Landmark polygons: oval and the parts that are never skin.
    oval_mask = dilate(polygon(shape, oval), options.oval_margin * unit)
    parts = {
        "eyes": dilate(polygon(shape, local[contours["left_eye"]]) | polygon(shape, local[contours["right_eye"]]),
                        options.eye_margin * unit),
        "brows": dilate(hull(shape, local[contours["left_brow"]]) | hull(shape, local[contours["right_brow"]]),
                         options.brow_margin * unit),
        "lips": dilate(polygon(shape, local[contours["lips_outer"]]), options.lip_margin * unit),
    }
    candidate = oval_mask & ~parts["eyes"] & ~parts["brows"] & ~parts["lips"]

    # 3. Skin-colour model fitted to this face (cheeks, nose bridge, forehead centre).
    lab = rgb_to_lab(roi)
    zone_map = _zone_map(shape, local)
    core = erode(candidate & (zone_map > 0), 0.08 * unit)
    if core.sum() < 50:
        core = candidate
    l_median = float(np.median(lab[..., 0][core]))
    nose_tip = polygon(shape, local[contours["nose_tip"]])
    below_tip = np.zeros(shape, bool)
    tip_y = local[4, 1]
    below_tip[int(max(0, tip_y)):, :] = True
    nostrils = nose_tip & below_tip & (lab[..., 0] < options.nostril_dark * l_median)
    parts["nostrils"] = dilate(nostrils, options.nostril_margin * unit)
    candidate &= ~parts["nostrils"]
    if options.use_colour_model:
        beyond = ~polygon(shape, local[contours["face_oval"]])
        forehead = (zone_map == ZONES.index("forehead") + 1) & ~beyond
        # the colour samples leave out the forehead, which a fringe may cover
        sample = core & ~forehead if (core & ~forehead).sum() > 200 else core
        skin = candidate & colour_ok(lab, sample, oval_mask, beyond, forehead, unit, options)
        skin |= _eye_rings(lab[..., 0], local, candidate, contours, unit, l_median, options)
        skin = fill_small_holes(skin, candidate, max_area=(0.12 * unit) ** 2)
        skin = open_mask(skin, 0.012 * unit)
        skin = keep_components_touching(skin, core)
    else:
        skin = candidate

    # 4. Zones: mesh triangles, the nearest zone for skin outside every triangle, smoothed borders.
    zone_map = _smooth_zones(_fill_nearest(zone_map, skin), 0.04 * unit)
    zone_map[~skin] = 0
    skin_lab = np.median(lab[skin], axis=0) if skin.any() else np.zeros(3)
    return skin, zone_map, parts, tuple(float(v) for v in skin_lab)


def whole_frame_regions(image: np.ndarray) -> FaceRegions:
    """Regions for a close-up of skin with no face: one zone, skin by a colour model fitted to the
    centre half of the frame (the photo is assumed to be framed on skin)."""
    height, width = image.shape[:2]
    lab = rgb_to_lab(image)
    centre = np.zeros((height, width), bool)
    centre[height // 4: 3 * height // 4, width // 4: 3 * width // 4] = True
    mean, inv_cov, l_median = fit_skin_colour(lab[centre])
    mask = (mahalanobis2(lab, mean, inv_cov) < 3.5**2) & (lab[..., 0] > 0.35 * l_median)
    mask = fill_small_holes(mask, np.ones_like(mask), max_area=0.01 * height * width)
    skin_lab = np.median(lab[mask], axis=0) if mask.any() else np.zeros(3)
    return FaceRegions(mask, mask.astype(np.uint8), ("whole_frame",), {}, "whole-frame colour",
                       tuple(float(v) for v in skin_lab))


# -- zones ----------------------------------------------------------------------------------
@lru_cache(maxsize=1)
def triangle_zones() -> np.ndarray:
    """Zone index (1-based, see ZONES) of every mesh triangle, from its centroid on the canonical face.

    Canonical frame: origin between the outer eye corners, unit = their distance, x towards the
    subject's left (image right), y down. Rules, in order:
      forehead: above the line halfway between the brows and the eyes;
      nose: between that line and the subnasale (landmark 2), inside a band that widens from
        0.6 x the inner-eye half-distance at the top to 1.1 x the alar half-width at the bottom;
      chin: below the mouth corners and within 1.3 x the mouth half-width of the midline;
      cheeks: the rest, split by side.
    """
    topo = topology()
    canon, tri, contours = topo["canonical"], topo["triangles"], topo["contours"]
    brow_y = canon[contours["left_brow"] + contours["right_brow"], 1].mean()
    top_y = brow_y / 2
    nose_bottom_y = canon[2, 1]
    inner_half = abs(canon[362, 0] - canon[133, 0]) / 2
    alar_half = abs(canon[294, 0] - canon[64, 0]) / 2
    mouth_y = (canon[61, 1] + canon[291, 1]) / 2
    mouth_half = abs(canon[291, 0] - canon[61, 0]) / 2
    centroid = canon[tri].mean(axis=1)
    x, y = centroid[:, 0], centroid[:, 1]
    t = np.clip((y - top_y) / (nose_bottom_y - top_y), 0, 1)
    nose_half = (1 - t) * 0.6 * inner_half + t * 1.1 * alar_half
    zones = np.where(x > 0, ZONES.index("left_cheek"), ZONES.index("right_cheek")) + 1
    zones = np.where((y > mouth_y) & (np.abs(x) < 1.3 * mouth_half), ZONES.index("chin") + 1, zones)
    zones = np.where((y >= top_y) & (y <= nose_bottom_y) & (np.abs(x) < nose_half), ZONES.index("nose") + 1, zones)
    zones = np.where(y < top_y, ZONES.index("forehead") + 1, zones)
    return zones.astype(np.uint8)


@lru_cache(maxsize=1)
def _zone_triangles() -> tuple[np.ndarray, ...]:
    """Per zone (1-based order of ZONES), the mesh triangles (n, 3) of landmark indices."""
    tri, zones = np.asarray(topology()["triangles"]), triangle_zones()
    return tuple(tri[zones == zone] for zone in range(1, len(ZONES) + 1))


def _zone_map(shape: tuple[int, int], local: np.ndarray) -> np.ndarray:
    zone_map = np.zeros(shape, np.uint8)
    points = np.round(local[:, :2] * 4).astype(np.int32)  # 2 bits of sub-pixel precision
    for zone, triangles in enumerate(_zone_triangles(), 1):
        cv2.fillPoly(zone_map, list(points[triangles]), zone, lineType=cv2.LINE_8, shift=2)
    return zone_map


def _smooth_zones(zone_map: np.ndarray, sigma: float) -> np.ndarray:
    """Replace the jagged triangle borders by the locally most common zone. Each zone's share is
    averaged over 4x4 blocks and blurred at that quarter resolution (cheap), then interpolated back
    before the vote is taken, so a border comes out smooth and in place, not in 4-pixel steps."""
    size = zone_map.shape[::-1]
    small = (max(1, round(size[0] / 4)), max(1, round(size[1] / 4)))
    best = np.zeros(zone_map.shape, np.uint8)  # 8-bit votes: uint8 resizes and blurs are the fast ones
    smooth = np.zeros(zone_map.shape, np.uint8)
    for zone in np.flatnonzero(np.bincount(zone_map.ravel(), minlength=len(ZONES) + 1)[1:]) + 1:
        share = cv2.resize(cv2.compare(zone_map, int(zone), cv2.CMP_EQ), small, interpolation=cv2.INTER_AREA)
        vote = cv2.resize(cv2.GaussianBlur(share, (0, 0), max(sigma / 4, 0.5)), size, interpolation=cv2.INTER_LINEAR)
        np.copyto(smooth, np.uint8(zone), where=vote > best)
        np.maximum(best, vote, out=best)
    np.copyto(smooth, np.uint8(0), where=zone_map == 0)
    return smooth


def _fill_nearest(zone_map: np.ndarray, skin: np.ndarray) -> np.ndarray:
    """Skin outside every mesh triangle takes the zone of the nearest zoned pixel."""
    missing = skin & (zone_map == 0)
    zoned = zone_map > 0
    if not missing.any() or not zoned.any():
        return zone_map
    # one Voronoi pass: each pixel gets the label of its nearest zoned pixel (labels 1..N in scan order)
    _, nearest = cv2.distanceTransformWithLabels((~zoned).astype(np.uint8), cv2.DIST_L2, 5,
                                                 labelType=cv2.DIST_LABEL_PIXEL)
    zone_of = np.zeros(int(nearest.max()) + 1, np.uint8)
    zone_of[nearest[zoned]] = zone_map[zoned]
    filled = zone_map.copy()
    filled[missing] = zone_of[nearest[missing]]
    return filled


def _grow_zones(zone_map: np.ndarray, skin: np.ndarray, steps: int = 8) -> np.ndarray:
    """Skin pixels left without a zone by upscaling (a rim a few pixels wide at the edge of the
    skin) take a neighbouring pixel's zone, one 3x3 step at a time: the nearest zone, as
    `_fill_nearest` gives it, at a tenth of its cost on a full-resolution face; `_fill_nearest`
    takes what is still unzoned after `steps` steps."""
    unzoned = skin & (zone_map == 0)
    for _ in range(steps):
        if not unzoned.any():
            return zone_map
        grown = cv2.dilate(zone_map, np.ones((3, 3), np.uint8))
        np.copyto(zone_map, grown, where=unzoned)
        unzoned &= zone_map == 0
    if unzoned.any():
        zone_map[unzoned] = _fill_nearest(zone_map, skin)[unzoned]
    return zone_map


def _eye_rings(lightness: np.ndarray, local: np.ndarray, candidate: np.ndarray, contours: dict, unit: float,
               l_median: float, options: RegionOptions) -> np.ndarray:
    """Skin around each eye that the colour model may have cut out (shadows, dark circles,
    eyeshadow). An eye whose ring is mostly dark is behind a lens or frame and gets nothing."""
    rings = np.zeros(candidate.shape, bool)
    if options.eye_ring <= 0:
        return rings
    for name in ("left_eye", "right_eye"):
        ring = polygon_dilated(candidate.shape, local[contours[name]], options.eye_ring * unit) & candidate
        if ring.any() and np.median(lightness[ring]) >= options.eye_ring_dark * l_median:
            rings |= ring
    return rings


# -- oval -----------------------------------------------------------------------------------
def _extended_oval(xy: np.ndarray, indices: list[int], extension: float) -> np.ndarray:
    oval = xy[indices].copy()
    up = xy[10] - xy[152]  # chin -> forehead top
    face_height = float(np.linalg.norm(up))
    up /= max(face_height, 1e-6)
    eye_mid = (xy[33] + xy[263]) / 2
    above = (oval - eye_mid) @ up  # how far above the eye line each oval point is
    weight = np.clip(above / max(above.max(), 1e-6), 0, 1)[:, None]
    return oval + weight * up * extension * face_height
