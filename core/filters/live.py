"""Live filter: per webcam frame, tracked and smoothed landmarks, then skin smoothing and makeup.

Landmarks come from mediapipe FaceMesh in tracking mode (it re-detects only when it loses the
face), smoothed with a one-euro filter so makeup does not jitter. Masks are built inside the
face's box only; nothing is computed for the rest of the frame.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass

import numpy as np

from core.filters.makeup import REGIONS, Preset, apply_makeup, makeup_masks
from core.filters.masks import eye_unit, polygon
from core.filters.retouch import smooth_skin
from core.mesh import normalized_points, topology


class OneEuroFilter:
    """One-euro filter (Casiez et al., CHI 2012) over arrays: smooth when still, responsive when moving.

    min_cutoff (Hz) sets jitter removal at rest; beta raises the cutoff with speed.
    """

    def __init__(self, min_cutoff: float = 1.0, beta: float = 0.05, d_cutoff: float = 1.0) -> None:
        self.min_cutoff, self.beta, self.d_cutoff = min_cutoff, beta, d_cutoff
        self._x: np.ndarray | None = None
        self._dx: np.ndarray | None = None
        self._t: float | None = None

    @staticmethod
    def _alpha(cutoff: np.ndarray | float, dt: float) -> np.ndarray | float:
        tau = 1.0 / (2 * math.pi * cutoff)
        return 1.0 / (1.0 + tau / dt)

    def __call__(self, x: np.ndarray, t: float) -> np.ndarray:
        if self._x is None or self._t is None or t <= self._t or x.shape != self._x.shape:
            self._x, self._dx, self._t = x.astype(np.float64), np.zeros_like(x, np.float64), t
            return x
        dt = t - self._t
        dx = (x - self._x) / dt
        a_d = self._alpha(self.d_cutoff, dt)
        self._dx = a_d * dx + (1 - a_d) * self._dx
        cutoff = self.min_cutoff + self.beta * np.abs(self._dx)
        a = self._alpha(cutoff, dt)
        self._x = a * x + (1 - a) * self._x
        self._t = t
        return self._x.astype(x.dtype)

    def reset(self) -> None:
        self._x = self._dx = self._t = None


@dataclass
class LiveOptions:
    smooth: float = 0.5  # skin smoothing strength 0-1
    preset: Preset | None = None
    regions: tuple[str, ...] = REGIONS
    intensity: float = 1.0
    min_cutoff: float = 1.5
    beta: float = 0.02


class LiveFilter:
    """Call `process(frame, timestamp)` per RGB uint8 frame; returns the filtered frame. Call close()."""

    def __init__(self, options: LiveOptions | None = None) -> None:
        from core.native import import_mediapipe, silenced_native_stderr

        mp = import_mediapipe()
        self.options = options or LiveOptions()
        with silenced_native_stderr():
            self._mesh = mp.solutions.face_mesh.FaceMesh(static_image_mode=False, max_num_faces=1,
                                                         refine_landmarks=True, min_detection_confidence=0.5,
                                                         min_tracking_confidence=0.5)
            self._mesh.process(np.zeros((64, 64, 3), np.uint8))
        self._smoother = OneEuroFilter(self.options.min_cutoff, self.options.beta)
        self._lock = threading.Lock()
        self.last_landmarks: np.ndarray | None = None

    def landmarks(self, frame: np.ndarray, timestamp: float | None = None) -> np.ndarray | None:
        """Smoothed (478, 3) landmarks in frame pixels, or None (and the smoother resets) without a face."""
        height, width = frame.shape[:2]
        with self._lock:
            result = self._mesh.process(frame)
        if not result.multi_face_landmarks:
            self._smoother.reset()
            return None
        points = normalized_points(result.multi_face_landmarks[0]) * np.array([width, height, width], np.float32)
        return self._smoother(points, time.perf_counter() if timestamp is None else timestamp)

    def process(self, frame: np.ndarray, timestamp: float | None = None) -> np.ndarray:
        landmarks = self.landmarks(frame, timestamp)
        self.last_landmarks = landmarks
        if landmarks is None:
            return frame
        opts = self.options
        skin = polygon(frame.shape[:2], landmarks[topology()["contours"]["face_oval"]])
        out = smooth_skin(frame, skin, landmarks, eye_unit(landmarks), opts.smooth) if opts.smooth > 0 else frame
        if opts.preset is not None:
            extent = opts.preset.regions["eyeshadow"].extent if "eyeshadow" in opts.preset.regions else 0.5
            masks = makeup_masks(frame.shape[:2], landmarks, skin, extent)
            out = apply_makeup(out, landmarks, opts.preset, skin, opts.regions, opts.intensity, masks)
        return out

    def close(self) -> None:
        self._mesh.close()

    def __enter__(self) -> LiveFilter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
