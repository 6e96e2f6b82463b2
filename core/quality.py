"""Photo quality checks: face size, exposure, sharpness and head pose, each with a plain warning."""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from core.colour import rgb_to_gray
from core.maskops import mask_bounds

# Thresholds. Blur: variance of the Laplacian of the face resized to 256 px wide; the CC0
# portraits (sharp studio photos) give 100-2000, visibly soft photos fall under ~40.
MIN_FACE_PX = 200
DARK_L, BRIGHT_L = 30.0, 85.0
MAX_CLIPPED = 0.05
MIN_SHARPNESS = 40.0
MAX_YAW, MAX_PITCH, MAX_ROLL = 30.0, 25.0, 20.0


@dataclass(frozen=True)
class QualityCheck:
    name: str
    value: float
    ok: bool
    message: str  # plain sentence, shown when not ok


def head_pose(landmarks: np.ndarray) -> tuple[float, float, float]:
    """(yaw, pitch, roll) in degrees from 3D mesh landmarks. Yaw > 0: the face turns to the
    image's right; pitch > 0: chin up; roll > 0: the head tilts clockwise in the image."""
    p = landmarks[:, :3].astype(np.float64)
    across = p[454] - p[234]  # subject's left cheek edge minus right
    up = p[10] - p[152]  # forehead top minus chin
    normal = np.cross(across, up)  # points out of the face, towards the camera (z smaller)
    normal /= np.linalg.norm(normal) + 1e-9
    yaw = math.degrees(math.atan2(normal[0], -normal[2]))
    pitch = math.degrees(math.atan2(-normal[1], -normal[2]))
    eyes = p[263, :2] - p[33, :2]
    roll = math.degrees(math.atan2(eyes[1], eyes[0]))
    return yaw, pitch, roll


def check_quality(image: np.ndarray, box: tuple[float, float, float, float], skin: np.ndarray,
                  skin_lightness: float, landmarks: np.ndarray | None) -> list[QualityCheck]:
    """All checks for one face; `box` in image pixels, `skin` a bool mask, lightness = median L*."""
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    side = min(x1 - x0, y1 - y0)
    checks = [QualityCheck("face_size", float(side), side >= MIN_FACE_PX,
                           f"The face is small ({side} px); move closer or use a higher-resolution photo.")]
    checks.append(QualityCheck("brightness", round(skin_lightness, 1), DARK_L <= skin_lightness <= BRIGHT_L,
                               "The skin looks too dark; face a window or a soft light." if skin_lightness < DARK_L
                               else "The skin looks overexposed; avoid direct flash or harsh light."))
    clipped = _clipped_fraction(image, skin)
    checks.append(QualityCheck("clipped_highlights", round(clipped, 3), clipped <= MAX_CLIPPED,
                               "Part of the skin is blown out by light; shine and flash hide skin detail."))
    face = rgb_to_gray(image[max(0, y0):y1, max(0, x0):x1])
    if face.size:
        face = cv2.resize(face, (256, max(1, round(256 * face.shape[0] / max(1, face.shape[1])))),
                          interpolation=cv2.INTER_AREA)
        sharpness = float(cv2.Laplacian(face, cv2.CV_64F).var())
    else:
        sharpness = 0.0
    checks.append(QualityCheck("sharpness", round(sharpness, 1), sharpness >= MIN_SHARPNESS,
                               "The photo looks blurry; hold the camera still and tap to focus on the face."))
    if landmarks is not None:
        yaw, pitch, roll = head_pose(landmarks)
        checks.append(QualityCheck("yaw", round(yaw, 1), abs(yaw) <= MAX_YAW,
                                   "The head is turned to the side; face the camera for a full view of both cheeks."))
        checks.append(QualityCheck("pitch", round(pitch, 1), abs(pitch) <= MAX_PITCH,
                                   "The head is tilted up or down; keep the camera at eye level."))
        checks.append(QualityCheck("roll", round(roll, 1), abs(roll) <= MAX_ROLL,
                                   "The head is tilted sideways; keep it upright."))
    return checks


def _clipped_fraction(image: np.ndarray, skin: np.ndarray) -> float:
    """Fraction of skin pixels with a channel at 250 or more (blown out), inside the skin's bounding box."""
    x, y, w, h = mask_bounds(skin)
    if not w:
        return 0.0
    crop, inside = image[y:y + h, x:x + w], skin[y:y + h, x:x + w]
    brightest = np.maximum(np.maximum(crop[..., 0], crop[..., 1]), crop[..., 2])
    return float(np.count_nonzero((brightest >= 250) & inside) / np.count_nonzero(inside))
