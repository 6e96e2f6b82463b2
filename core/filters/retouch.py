"""Retouch (fill blemishes from surrounding skin) and skin-only smoothing.

Retouch is frequency separation: the low frequencies inside the mask are rebuilt from the skin
around it (normalised convolution), the high frequencies (pores, fine texture) are kept, damped
only as far as the lesion itself showed in them. Smoothing is an edge-aware guided filter,
weighted by a soft skin mask that is zero on eyes, brows, lips, hair and background.
"""

from __future__ import annotations

import cv2
import numpy as np

from core.filters.masks import feather, protected


def _check(image: np.ndarray, *masks: np.ndarray) -> None:
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an HxWx3 uint8 RGB image, got {image.shape} {image.dtype}")
    for mask in masks:
        if mask.shape != image.shape[:2]:
            raise ValueError(f"mask of shape {mask.shape} does not match the image {image.shape[:2]}")


def _roi(mask: np.ndarray, pad: int, shape: tuple[int, int]) -> tuple[slice, slice] | None:
    ys, xs = np.nonzero(mask.any(axis=1))[0], np.nonzero(mask.any(axis=0))[0]
    if not len(ys):
        return None
    return (slice(max(0, ys[0] - pad), min(shape[0], ys[-1] + pad + 1)),
            slice(max(0, xs[0] - pad), min(shape[1], xs[-1] + pad + 1)))


def retouch(image: np.ndarray, blemishes: np.ndarray, skin: np.ndarray, unit: float, strength: float = 1.0) -> np.ndarray:
    """Fill `blemishes` (bool HxW, e.g. acne and redness from an analysis) from the skin around them.

    Args:
        image: RGB uint8. skin: bool HxW; only these pixels may change.
        unit: face scale in pixels (outer eye-corner distance) that sets the filter sizes.
        strength: 0 (no change) to 1 (full repair).
    """
    _check(image, blemishes, skin)
    if not 0.0 <= strength <= 1.0:
        raise ValueError(f"strength {strength} must be between 0 and 1")
    target = blemishes & skin
    pad = int(0.3 * unit) + 4
    box = _roi(target, pad, skin.shape)
    if box is None or strength == 0:
        return image.copy()
    out = image.copy()
    patch = image[box].astype(np.float32)
    hole = cv2.dilate(target[box].astype(np.uint8), np.ones((3, 3), np.uint8)).astype(np.float32)
    valid = skin[box].astype(np.float32) * (1 - hole)
    # 1. Split into low and high frequencies.
    sigma_low = max(1.0, 0.04 * unit)
    low = cv2.GaussianBlur(patch, (0, 0), sigma_low)
    high = patch - low
    # 2. Rebuild the low band inside the hole from valid skin around it (normalised convolution).
    sigma_fill = max(2.0, 0.06 * unit)
    weight = cv2.GaussianBlur(valid, (0, 0), sigma_fill)
    filled = cv2.GaussianBlur(low * valid[..., None], (0, 0), sigma_fill) / np.maximum(weight, 1e-4)[..., None]
    filled = np.where(weight[..., None] > 1e-3, filled, low)
    # 3. Skin texture: the high band stays, damped inside the hole where it holds the lesion's edges.
    repaired = filled + high * np.where(hole > 0, 0.35, 1.0)[..., None]
    # 4. Blend with a feathered hole, never outside skin.
    alpha = feather(hole > 0, max(0.5, 0.01 * unit)) * skin[box] * strength
    result = patch + (repaired - patch) * alpha[..., None]
    out[box] = np.clip(result + 0.5, 0, 255).astype(np.uint8)
    return out


def smooth_skin(image: np.ndarray, skin: np.ndarray, landmarks: np.ndarray | None, unit: float,
                strength: float = 0.5) -> np.ndarray:
    """Edge-aware smoothing of skin only; eyes, brows, lips (from `landmarks`), hair, background untouched."""
    _check(image, skin)
    if not 0.0 <= strength <= 1.0:
        raise ValueError(f"strength {strength} must be between 0 and 1")
    area = skin & ~protected(skin.shape, landmarks) if landmarks is not None else skin
    box = _roi(area, 2, skin.shape)
    if box is None or strength == 0:
        return image.copy()
    patch = image[box]
    radius = max(2, int(round(0.035 * unit)))
    eps = 60.0 + 340.0 * strength
    if radius >= 4:  # larger faces: filter at half size (same smoothing, a quarter of the work)
        small = cv2.resize(patch, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA)
        smoothed = cv2.resize(cv2.ximgproc.guidedFilter(small, small, radius // 2, eps), patch.shape[1::-1],
                              interpolation=cv2.INTER_LINEAR)
    else:
        smoothed = cv2.ximgproc.guidedFilter(patch, patch, radius, eps)
    weights = feather(area[box], max(0.5, 0.01 * unit)) * area[box] * (0.85 * strength)
    result = smoothed.astype(np.float32)  # patch + (smoothed - patch) * weights, in one buffer
    result -= patch
    result *= weights[..., None]
    result += patch
    result += 0.5
    out = image.copy()
    out[box] = np.clip(result, 0, 255, out=result).astype(np.uint8)
    return out
