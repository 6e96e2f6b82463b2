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


def pixels(points: np.ndarray, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows and columns of (N, >=2) x, y points, rounded and kept inside a height x width image."""
    return (np.clip(np.round(points[:, 1]).astype(int), 0, height - 1),
            np.clip(np.round(points[:, 0]).astype(int), 0, width - 1))


def find_lesions(crop_heat: np.ndarray, crop_skin: np.ndarray, image: np.ndarray, origin: tuple[int, int],
                 threshold: float, count_threshold: float, verifier=None,
                 verifier_floor: float = 1.0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """Lesions from a crop's heatmap (the same map a calibration reads, so its thresholds apply here),
    on skin only, in pixels of `image` (the crop's top-left corner is `origin`): the marked ones
    (x, y, score: the peak value, or with a `core.lesion_verifier.LesionVerifier` the combined score
    of the peaks from `verifier_floor` up; >= `threshold`), the faint ones (peak value >=
    `count_threshold`, not marked), the bool blob of the crop around each marked one (heat >= half
    of the threshold or of its own peak value, the lower), and the verifier's candidates (x, y,
    heat, probability; None without a verifier)."""
    from core.lesion_verifier import combined_score

    floor = count_threshold if verifier is None else min(count_threshold, verifier_floor)
    peaks = lesion_peaks(crop_heat, floor)
    rows, cols = pixels(peaks, *crop_skin.shape)
    on_skin = crop_skin[rows, cols]
    peaks, rows, cols = peaks[on_skin], rows[on_skin], cols[on_skin]
    peaks[:, :2] += origin
    candidates = None
    score = peaks[:, 2]
    if verifier is not None:
        chosen = peaks[:, 2] >= verifier_floor
        probability = (verifier.score(image, np.where(crop_skin, crop_heat, np.float32(0)), peaks[chosen],
                                      heat_origin=origin) if chosen.any() else np.zeros(0, np.float32))
        candidates = np.column_stack([peaks[chosen], probability]).astype(np.float32)
        score = np.zeros(len(peaks), np.float32)
        score[chosen] = combined_score(peaks[chosen, 2], probability)
    marked = score >= threshold
    faint = peaks[~marked & (peaks[:, 2] >= count_threshold)]
    heat_of_marked = peaks[marked, 2]
    lesions = np.column_stack([peaks[marked, :2], score[marked]]).astype(np.float32)
    lesions = lesions[np.argsort(-lesions[:, 2], kind="stable")]
    if not len(lesions):
        return lesions, faint, np.zeros(crop_heat.shape, bool), candidates
    level = 0.5 * min(threshold, float(heat_of_marked.min()))
    count, components = cv2.connectedComponents((crop_heat >= level).astype(np.uint8))
    keep = np.zeros(count, bool)
    keep[components[rows[marked], cols[marked]]] = True
    keep[0] = False
    return lesions, faint, keep[components] & crop_skin, candidates


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
