"""Post-processing of a lesion-centre heatmap: the peaks that mark acne lesions and the density
whose sum counts them. Both work on a heatmap in [0, 1] in the pixels of the analysed image."""

from __future__ import annotations

import cv2
import numpy as np


def lesion_peaks(heat: np.ndarray, threshold: float, radius: int = 2) -> np.ndarray:
    """Lesion centres in a heatmap (float HxW in [0, 1]): local maxima within `radius` px that
    reach `threshold`. Returns float32 (N, 3): x, y, peak value, strongest first."""
    size = 2 * radius + 1
    local_max = cv2.dilate(heat, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size)))
    maxima = ((heat >= threshold) & (heat >= local_max)).astype(np.uint8)
    # a plateau gives several equal maxima side by side: one peak per connected group
    count, labels, _, centroids = cv2.connectedComponentsWithStats(maxima, connectivity=8)
    if count <= 1:
        return np.zeros((0, 3), np.float32)
    values = np.zeros(count, np.float32)
    members = np.flatnonzero(maxima)
    values[labels.flat[members]] = heat.flat[members]  # maxima side by side hold the same value
    peaks = np.column_stack([centroids[1:], values[1:]]).astype(np.float32)
    return peaks[np.argsort(-peaks[:, 2], kind="stable")]


def lesion_density(crop_heat: np.ndarray, crop_skin: np.ndarray, floor: float, mass: float,
                   input_scale: float) -> np.ndarray:
    """Estimated lesions per pixel: the heat above `floor` on skin, in units of `mass` (the heat of
    one lesion summed over the network's input pixels); `input_scale` is network pixels per pixel
    of `crop_heat`, so the count does not depend on the photo's resolution. float32, same shape."""
    density = crop_heat - np.float32(floor)
    np.maximum(density, 0, out=density)
    density *= np.float32(input_scale**2 / mass)
    density[~crop_skin] = 0
    return density
