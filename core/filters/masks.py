"""Masks for filters, from mesh landmarks: lips, eyelids, cheeks, and the parts to protect.

Hard masks are bool HxW; `feather` turns one into float32 weights in [0, 1] whose support is
bounded (3 sigma), so a filter never reaches further than the mask plus its feather band.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from core.maskops import polygon
from core.mesh import topology


def feather(mask: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian-feathered float32 weights; zero beyond ceil(3 sigma) pixels from the mask."""
    weights = mask.astype(np.float32)
    if sigma < 0.3:
        return weights
    size = 2 * math.ceil(3 * sigma) + 1
    return cv2.GaussianBlur(weights, (size, size), sigma, borderType=cv2.BORDER_CONSTANT)


def feather_reach(sigma: float) -> int:
    """How many pixels beyond the mask `feather(mask, sigma)` can reach."""
    return 0 if sigma < 0.3 else math.ceil(3 * sigma)


def eye_unit(landmarks: np.ndarray) -> float:
    """Outer eye-corner distance in pixels: the scale of every filter size."""
    return float(np.linalg.norm(landmarks[263, :2] - landmarks[33, :2]))


def lips(shape: tuple[int, int], landmarks: np.ndarray) -> np.ndarray:
    """Lip pixels: the outer lip contour minus the mouth opening (so teeth are left out)."""
    contours = topology()["contours"]
    return polygon(shape, landmarks[contours["lips_outer"]]) & ~polygon(shape, landmarks[contours["lips_inner"]])


def protected(shape: tuple[int, int], landmarks: np.ndarray, margin: float = 0.02) -> np.ndarray:
    """Eyes, brows and lips (raw mesh contours) grown by `margin` eye-distance units.

    Drawn and dilated in a window around those features (the dilation's reach included), not over
    the whole frame: the same mask, a quarter of the time on a 640x480 webcam frame."""
    contours = topology()["contours"]
    outlines = [landmarks[contours[name], :2] for name in ("left_eye", "right_eye", "lips_outer")]
    outlines += [cv2.convexHull(landmarks[contours[name], :2].astype(np.float32)).reshape(-1, 2)
                 for name in ("left_brow", "right_brow")]
    radius = max(1, int(round(margin * eye_unit(landmarks))))
    mask = np.zeros(shape, bool)
    points = np.vstack(outlines)
    reach = radius + 2
    x0, y0 = np.maximum(np.floor(points.min(0)).astype(int) - reach, 0)
    x1, y1 = np.minimum(np.ceil(points.max(0)).astype(int) + reach + 1, [shape[1], shape[0]])
    if x1 <= x0 or y1 <= y0:
        return mask
    window = np.zeros((y1 - y0, x1 - x0), np.uint8)
    offset = np.array([x0, y0], np.float64)
    for outline in outlines:  # integer shifts keep polygon()'s quarter-pixel rasterisation exact
        window |= polygon(window.shape, outline - offset).view(np.uint8)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    mask[y0:y1, x0:x1] = cv2.dilate(window, kernel).view(bool)
    return mask


def eyelids(shape: tuple[int, int], landmarks: np.ndarray, extent: float = 0.6) -> np.ndarray:
    """Both upper lids: from the upper eye contour up `extent` of the way to the lower brow edge."""
    contours = topology()["contours"]
    mask = np.zeros(shape, bool)
    for eye, brow in (("left_eye", "left_brow"), ("right_eye", "right_brow")):
        eye_pts = landmarks[contours[eye], :2]
        centre_y = eye_pts[:, 1].mean()
        upper = eye_pts[eye_pts[:, 1] <= centre_y]
        upper = upper[np.argsort(upper[:, 0])]
        brow_pts = landmarks[contours[brow], :2]
        # lower brow edge above each upper-lid point: the lowest of the three brow points nearest in x
        near = np.argsort(np.abs(brow_pts[None, :, 0] - upper[:, None, 0]), axis=1)[:, :3]
        top_y = brow_pts[near, 1].max(axis=1)
        tops = np.column_stack([upper[:, 0], upper[:, 1] + (top_y - upper[:, 1]) * extent])
        outline = np.vstack([upper, tops[::-1]])
        mask |= polygon(shape, outline)
    return mask & ~polygon(shape, landmarks[contours["left_eye"]]) & ~polygon(shape, landmarks[contours["right_eye"]])


def cheeks(shape: tuple[int, int], landmarks: np.ndarray) -> np.ndarray:
    """Ellipses on the apples of both cheeks, tilted up towards the temples."""
    unit = eye_unit(landmarks)
    mask = np.zeros(shape, np.uint8)
    for low, high in ((205, 50), (425, 280)):  # mesh points on the cheek apple and the cheekbone
        centre = (landmarks[low, :2] + landmarks[high, :2]) / 2
        direction = centre - landmarks[1, :2]  # away from the nose tip
        angle = math.degrees(math.atan2(direction[1], direction[0]))
        axes = (max(2, int(0.2 * unit)), max(2, int(0.12 * unit)))
        cv2.ellipse(mask, (int(round(centre[0])), int(round(centre[1]))), axes, angle, 0, 360, 1, -1)
    return mask.astype(bool)
