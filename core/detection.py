"""Face detection: every face in the photo with score, box and keypoints.

Backends (one `FaceDetector`, chosen by `DetectorOptions.backend`):
- "mediapipe": BlazeFace short- and full-range models bundled in the mediapipe 0.10.14 wheel.
- "opencv": the Haar cascade shipped with OpenCV 4.x (no keypoints; used as the fallback).
- "facexlib": RetinaFace-ResNet50 when facexlib is installed and its weights file is present.
- "auto": facexlib when available, else mediapipe; the OpenCV cascade when that finds nothing.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from core.errors import BackendUnavailableError, ImageDecodeError

BACKENDS = ("auto", "mediapipe", "opencv", "facexlib")


@dataclass(frozen=True)
class Face:
    """A detected face. Coordinates are pixels of the analysed RGB image, origin top-left.

    box: (x0, y0, x1, y1), x right and y down, clipped to the image.
    keypoints: name -> (x, y); names from right_eye, left_eye, nose_tip, mouth, right_ear,
    left_ear (the subject's own sides). Empty for backends without keypoints.
    """

    box: tuple[float, float, float, float]
    score: float
    backend: str
    keypoints: dict[str, tuple[float, float]] = field(default_factory=dict)

    @property
    def width(self) -> float:
        return self.box[2] - self.box[0]

    @property
    def height(self) -> float:
        return self.box[3] - self.box[1]

    @property
    def area(self) -> float:
        return self.width * self.height


@dataclass(frozen=True)
class DetectorOptions:
    backend: str = "auto"
    min_score: float = 0.6  # noise can reach 0.58 on BlazeFace; the weakest CC0 portrait scores 0.64
    max_faces: int = 20
    facexlib_weights: str | None = None  # path to detection_Resnet50_Final.pth; env GLOWAI_FACEXLIB_DIR
    # mediapipe: the full-range model (13 ms here, 3x the short-range one) runs only when the
    # short-range model finds no face this wide, as a fraction of the photo's shorter side (a selfie's
    # face is 0.3-0.8 of it); 0 runs both always. On the CC0 portraits, the examples and 80 ACNE04
    # photos, no face the full-range model adds is lost at 0.25.
    full_range_below: float = 0.25


class FaceDetector:
    """Finds faces. `detect(image)` returns faces sorted largest first. Thread-safe; call close()."""

    def __init__(self, options: DetectorOptions | None = None) -> None:
        self.options = options or DetectorOptions()
        if self.options.backend not in BACKENDS:
            raise ValueError(f"unknown detector backend {self.options.backend!r}; valid: {', '.join(BACKENDS)}")
        self._lock = threading.Lock()
        self._mediapipe: list | None = None
        self._cascade = None
        self._facexlib = None
        if self.options.backend == "facexlib" or (self.options.backend == "auto" and facexlib_available(self.options)):
            self._facexlib = _load_facexlib(self.options)

    def detect(self, image: np.ndarray) -> list[Face]:
        """Faces in an RGB uint8 HWC image, largest first; an empty list when there is none."""
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ImageDecodeError(f"detect() needs an HxWx3 uint8 RGB image, got {image.shape} {image.dtype}")
        backend = self.options.backend
        with self._lock:
            if self._facexlib is not None:
                faces = self._detect_facexlib(image)
            elif backend in ("auto", "mediapipe"):
                faces = self._detect_mediapipe(image)
            else:
                faces = []
            if not faces and backend in ("auto", "opencv"):
                faces = self._detect_opencv(image)
        faces = [f for f in faces if f.score >= self.options.min_score and f.width > 1 and f.height > 1]
        faces.sort(key=lambda f: f.area, reverse=True)
        return faces[: self.options.max_faces]

    # -- backends -------------------------------------------------------------------------
    def _detect_mediapipe(self, image: np.ndarray) -> list[Face]:
        if self._mediapipe is None:
            from core.native import import_mediapipe, silenced_native_stderr

            solution = import_mediapipe().solutions.face_detection
            with silenced_native_stderr():
                # model 0: short range (faces within ~2 m, selfies); model 1: full range (smaller faces).
                self._mediapipe = [
                    solution.FaceDetection(model_selection=m, min_detection_confidence=0.3) for m in (0, 1)
                ]
                for model in self._mediapipe:  # first run logs; do it quietly now
                    model.process(np.zeros((64, 64, 3), np.uint8))
        height, width = image.shape[:2]
        faces: list[Face] = []
        for index, model in enumerate(self._mediapipe):
            selfie = self.options.full_range_below * min(height, width)
            if index == 1 and any(f.score >= self.options.min_score and f.width >= selfie for f in faces):
                break  # a selfie-sized face: the short-range model is the one made for it
            result = model.process(image)
            for det in result.detections or []:
                rel = det.location_data.relative_bounding_box
                box = _clip_box(
                    (rel.xmin * width, rel.ymin * height, (rel.xmin + rel.width) * width, (rel.ymin + rel.height) * height),
                    width,
                    height,
                )
                names = ("right_eye", "left_eye", "nose_tip", "mouth", "right_ear", "left_ear")
                kps = det.location_data.relative_keypoints
                keypoints = {n: (kp.x * width, kp.y * height) for n, kp in zip(names, kps, strict=False)}
                faces.append(Face(box, float(det.score[0]), "mediapipe", keypoints))
        return _nms(faces, iou_threshold=0.4)

    def _detect_opencv(self, image: np.ndarray) -> list[Face]:
        import cv2

        from core.colour import rgb_to_gray

        if self._cascade is None:
            path = Path(cv2.data.haarcascades) / "haarcascade_frontalface_default.xml"
            self._cascade = cv2.CascadeClassifier(str(path))
            if self._cascade.empty():
                raise BackendUnavailableError(f"OpenCV cascade {path} is missing; reinstall opencv-contrib-python 4.x")
        gray = rgb_to_gray(image)
        scale = min(1.0, 800.0 / max(gray.shape))
        small = cv2.resize(gray, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) if scale < 1 else gray
        small = cv2.equalizeHist(small)
        min_side = max(24, int(min(small.shape) * 0.08))
        boxes, _, weights = self._cascade.detectMultiScale3(
            small, scaleFactor=1.1, minNeighbors=6, minSize=(min_side, min_side), outputRejectLevels=True
        )
        height, width = image.shape[:2]
        faces = []
        for (x, y, w, h), weight in zip(np.asarray(boxes).reshape(-1, 4), np.asarray(weights).reshape(-1), strict=False):
            score = float(1.0 / (1.0 + np.exp(-(weight - 2.0))))  # cascade level weight -> (0, 1)
            box = _clip_box((x / scale, y / scale, (x + w) / scale, (y + h) / scale), width, height)
            faces.append(Face(box, score, "opencv-haar"))
        return _nms(faces, iou_threshold=0.3)

    def _detect_facexlib(self, image: np.ndarray) -> list[Face]:
        import torch

        from core.colour import rgb_to_bgr

        height, width = image.shape[:2]
        with torch.no_grad():
            dets = self._facexlib.detect_faces(rgb_to_bgr(image), conf_threshold=self.options.min_score)
        faces = []
        names = ("right_eye", "left_eye", "nose_tip", "mouth_right", "mouth_left")
        for det in np.asarray(dets).reshape(-1, 15):
            points = det[5:15].reshape(5, 2)
            faces.append(
                Face(_clip_box(tuple(det[:4]), width, height), float(det[4]), "facexlib-retinaface",
                     {n: (float(x), float(y)) for n, (x, y) in zip(names, points, strict=False)})
            )
        return faces

    def close(self) -> None:
        for model in self._mediapipe or []:
            model.close()
        self._mediapipe = None

    def __enter__(self) -> FaceDetector:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _facexlib_weights(options: DetectorOptions) -> Path:
    if options.facexlib_weights:
        return Path(options.facexlib_weights)
    root = Path(os.environ.get("GLOWAI_FACEXLIB_DIR", Path.home() / ".cache" / "glowai" / "facexlib"))
    return root / "detection_Resnet50_Final.pth"


def facexlib_available(options: DetectorOptions | None = None) -> bool:
    """True when facexlib imports and the RetinaFace weights file is on disk (nothing is downloaded)."""
    import importlib.util

    return importlib.util.find_spec("facexlib") is not None and _facexlib_weights(options or DetectorOptions()).is_file()


def _load_facexlib(options: DetectorOptions):
    weights = _facexlib_weights(options)
    if not facexlib_available(options):
        raise BackendUnavailableError(
            f"facexlib backend needs `pip install --no-deps facexlib` and its weights at {weights}; "
            "or use --detector mediapipe"
        )
    import torch
    from facexlib.detection.retinaface import RetinaFace

    model = RetinaFace(network_name="resnet50", half=False, device=torch.device("cpu"))
    state = torch.load(weights, map_location="cpu", weights_only=True)
    model.load_state_dict({k.removeprefix("module."): v for k, v in state.items()}, strict=True)
    return model.eval()


def _clip_box(box: tuple[float, ...], width: int, height: int) -> tuple[float, float, float, float]:
    x0, y0, x1, y1 = (float(v) for v in box)
    return (max(0.0, x0), max(0.0, y0), min(float(width), x1), min(float(height), y1))


def box_iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _nms(faces: list[Face], iou_threshold: float) -> list[Face]:
    kept: list[Face] = []
    for face in sorted(faces, key=lambda f: f.score, reverse=True):
        if all(box_iou(face.box, other.box) < iou_threshold for other in kept):
            kept.append(face)
    return kept
