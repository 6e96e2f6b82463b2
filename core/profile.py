"""Head pose from face-mesh landmarks, and the skin envelope of a face turned to the side.

On a three-quarter or side view the mesh oval stops short of the visible skin: the near cheek
runs on towards the ear and under the jaw, the far temple and cheek show beside the brow and
nose. `widen_for_profile` grows the envelope outwards in proportion to how far the head is
turned (more along the jaw), so the colour model, not the mesh, decides where skin ends there.
A frontal face (yaw under `yaw_start`) keeps its envelope exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

RIGHT_CHEEK, LEFT_CHEEK = 234, 454  # mesh points on the subject's right and left cheek edges
FOREHEAD_TOP, CHIN = 10, 152


@dataclass(frozen=True)
class ProfileOptions:
    """How far the envelope grows on a turned head. Margins are in eye-distance units, reached
    at `yaw_full` degrees and scaled linearly from 0 at `yaw_start`."""

    yaw_start: float = 25.0
    yaw_full: float = 40.0
    margin: float = 0.5  # outwards all round
    jaw_margin: float = 0.3  # ... and this much more where the envelope faces down (jaw, under the chin)
    convex: bool = True  # take the convex hull: a side view's oval is a crescent that leaves out nose and lips side


def yaw_degrees(landmarks: np.ndarray) -> float:
    """Head yaw from the depth of the two cheek edges: 0 frontal, positive when the subject's
    left cheek is farther from the camera than the right. Needs (478, 3) landmarks."""
    dx = float(landmarks[LEFT_CHEEK, 0] - landmarks[RIGHT_CHEEK, 0])
    dz = float(landmarks[LEFT_CHEEK, 2] - landmarks[RIGHT_CHEEK, 2])
    return float(np.degrees(np.arctan2(dz, abs(dx) + 1e-6)))


def profile_weight(landmarks: np.ndarray, options: ProfileOptions) -> float:
    """0 for a frontal face, rising to 1 at `yaw_full` degrees of yaw; 0 without depth."""
    if landmarks.shape[1] < 3 or options.yaw_full <= options.yaw_start:
        return 0.0
    return float(np.clip((abs(yaw_degrees(landmarks)) - options.yaw_start)
                         / (options.yaw_full - options.yaw_start), 0.0, 1.0))


def widen_for_profile(envelope: np.ndarray, landmarks: np.ndarray, options: ProfileOptions | None = None) -> np.ndarray:
    """The envelope polygon (N, 2) pushed outwards from its centre by the profile margins.

    Each point moves along its direction from the polygon's centroid by
    weight * unit * (margin + jaw_margin * max(0, cos(angle to the chin direction))).
    """
    options = options or ProfileOptions()
    weight = profile_weight(landmarks, options)
    if weight <= 0:
        return envelope
    xy = landmarks[:, :2].astype(np.float64)
    unit = float(np.linalg.norm(xy[263] - xy[33]))
    centre = envelope.mean(axis=0)
    out = envelope - centre
    out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-6)
    down = xy[CHIN] - xy[FOREHEAD_TOP]
    down /= max(float(np.linalg.norm(down)), 1e-6)
    facing_down = np.clip(out @ down, 0.0, 1.0)[:, None]
    widened = envelope + out * weight * unit * (options.margin + options.jaw_margin * facing_down)
    if options.convex:
        hull = cv2.convexHull(widened.astype(np.float32)).reshape(-1, 2)
        return hull.astype(np.float64)
    return widened
