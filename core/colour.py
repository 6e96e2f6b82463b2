"""Colour conversions, in one place. Inputs are RGB uint8 unless a name says otherwise."""

from __future__ import annotations

import math

import cv2
import numpy as np


def rgb_to_bgr(image: np.ndarray) -> np.ndarray:
    """RGB uint8 HWC -> BGR uint8 HWC (for OpenCV calls that want BGR)."""
    return np.ascontiguousarray(image[:, :, ::-1])


def rgb_to_gray(image: np.ndarray) -> np.ndarray:
    """RGB uint8 HWC -> grey uint8 HW (ITU-R BT.601 luma)."""
    return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)


def rgb_to_lab(image: np.ndarray) -> np.ndarray:
    """RGB uint8 (sRGB, D65) -> CIELAB float32: L in [0, 100], a and b roughly in [-128, 127]."""
    scaled = image.astype(np.float32)
    scaled *= np.float32(1 / 255)  # in place: a division into a new array costs ten times as much
    return cv2.cvtColor(scaled, cv2.COLOR_RGB2LAB)


def rgb_to_ycrcb(image: np.ndarray) -> np.ndarray:
    """RGB uint8 -> YCrCb uint8 (channels Y, Cr, Cb)."""
    return cv2.cvtColor(image, cv2.COLOR_RGB2YCrCb)


# Individual Typology Angle categories (Chardon et al., 1991; Del Bino et al., 2006), lower bounds in degrees.
ITA_CATEGORIES: tuple[tuple[float, str], ...] = (
    (55.0, "very light"),
    (41.0, "light"),
    (28.0, "intermediate"),
    (10.0, "tan"),
    (-30.0, "brown"),
    (-math.inf, "dark"),
)


def ita_degrees(lightness: float, b: float) -> float:
    """Individual Typology Angle: atan2(L* - 50, b*) in degrees (b* > 0 for any skin)."""
    return math.degrees(math.atan2(lightness - 50.0, b))


def ita_category(ita: float) -> str:
    """Name of the ITA skin-tone category that `ita` (degrees) falls in."""
    for lower, name in ITA_CATEGORIES:
        if ita > lower:
            return name
    return ITA_CATEGORIES[-1][1]
