"""Bool-mask operations shared by the regions, the report, the overlays and the filters: polygons,
morphology by disk or distance transform, rings, holes and components, bounding boxes."""

from __future__ import annotations

import cv2
import numpy as np


def mask_bounds(mask: np.ndarray) -> tuple[int, int, int, int]:
    """x, y, width, height of the bounding box of a bool mask's True pixels (all 0 when none)."""
    return cv2.boundingRect(np.ascontiguousarray(mask, dtype=bool).view(np.uint8))


def polygon(shape: tuple[int, int], points: np.ndarray) -> np.ndarray:
    mask = np.zeros(shape, np.uint8)
    cv2.fillPoly(mask, [np.round(points[:, :2] * 4).astype(np.int32)], 1, shift=2)
    return mask.astype(bool)


def hull(shape: tuple[int, int], points: np.ndarray) -> np.ndarray:
    hull = cv2.convexHull(points[:, :2].astype(np.float32)).reshape(-1, 2)
    return polygon(shape, hull)


def disk(radius: float) -> np.ndarray:
    r = max(1, int(round(radius)))
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))


def dilate(mask: np.ndarray, radius: float) -> np.ndarray:
    """Grow by `radius` pixels; a negative radius shrinks instead."""
    if radius < 0:
        return erode(mask, -radius)
    if radius < 0.5:
        return mask
    if radius > 4:  # a distance transform costs the same for any radius
        return cv2.distanceTransform((~mask).astype(np.uint8), cv2.DIST_L2, 5) <= radius
    return cv2.dilate(mask.astype(np.uint8), disk(radius)).astype(bool)


def ring(mask: np.ndarray, inner: float, outer: float) -> np.ndarray:
    """Pixels farther than `inner` but within `outer` of `mask`: dilate(outer) & ~dilate(inner),
    from one distance transform when both radii take that path."""
    if inner <= 4:
        return dilate(mask, outer) & ~dilate(mask, inner)
    distance = cv2.distanceTransform((~mask).astype(np.uint8), cv2.DIST_L2, 5)
    return (distance <= outer) & (distance > inner)


def polygon_dilated(shape: tuple[int, int], points: np.ndarray, radius: float) -> np.ndarray:
    """dilate(polygon(shape, points), radius), computed in a window around the polygon."""
    reach = int(np.ceil(max(radius, 0))) + 2
    x0, y0 = np.maximum(np.floor(points[:, :2].min(0)).astype(int) - reach, 0)
    x1, y1 = np.minimum(np.ceil(points[:, :2].max(0)).astype(int) + reach + 1, [shape[1], shape[0]])
    mask = np.zeros(shape, bool)
    if x1 <= x0 or y1 <= y0:
        return mask
    mask[y0:y1, x0:x1] = dilate(polygon((y1 - y0, x1 - x0), points - [x0, y0]), radius)
    return mask


def erode(mask: np.ndarray, radius: float) -> np.ndarray:
    if radius > 4:
        return cv2.distanceTransform(mask.astype(np.uint8), cv2.DIST_L2, 5) > radius
    return cv2.erode(mask.astype(np.uint8), disk(radius)).astype(bool)


def open_mask(mask: np.ndarray, radius: float) -> np.ndarray:
    return cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_OPEN, disk(radius)).astype(bool)


def fill_small_holes(mask: np.ndarray, allowed: np.ndarray, max_area: float) -> np.ndarray:
    """Fill holes smaller than `max_area` pixels (blemishes, pores, specular spots) inside `allowed`."""
    count, labels, stats, _ = cv2.connectedComponentsWithStats((~mask).astype(np.uint8), connectivity=4)
    small = np.zeros(count, bool)
    small[1:] = stats[1:, cv2.CC_STAT_AREA] <= max_area
    touches_border = np.zeros(count, bool)
    for edge in (labels[0], labels[-1], labels[:, 0], labels[:, -1]):
        touches_border[np.unique(edge)] = True
    fill = small & ~touches_border
    return mask | (fill[labels] & allowed)


def keep_components_touching(mask: np.ndarray, seed: np.ndarray) -> np.ndarray:
    count, labels = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
    if count <= 1:
        return mask
    keep = np.zeros(count, bool)
    keep[np.unique(labels[seed & mask])] = True
    keep[0] = False
    return keep[labels]
