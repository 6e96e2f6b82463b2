"""Face mesh landmarks (mediapipe FaceMesh, 478 points) and the mesh topology used by regions.

Landmark arrays are float32 (478, 3): x and y in pixels of the analysed image (origin top-left),
z in the same scale as x, relative depth (smaller = closer to the camera). "Left" and "right"
are the subject's own sides: the subject's left eye appears on the right of the image.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from core.detection import Face

NUM_LANDMARKS = 478
DATA_DIR = Path(__file__).parent / "data"


@dataclass(frozen=True)
class MeshOptions:
    crop_scales: tuple[float, ...] = (1.8, 2.6, 1.3)  # square crops around the face box, tried in order


class FaceMesher:
    """Runs mediapipe FaceMesh on a square crop around one detected face. Thread-safe; call close()."""

    backend = "mediapipe-facemesh"

    def __init__(self, options: MeshOptions | None = None) -> None:
        from core.native import import_mediapipe, silenced_native_stderr

        mp = import_mediapipe()  # imported here so `import core` stays light
        self.options = options or MeshOptions()
        with silenced_native_stderr():
            self._mesh = mp.solutions.face_mesh.FaceMesh(
                static_image_mode=True,
                max_num_faces=1,
                refine_landmarks=True,  # 478 points: the 10 iris points help the eye masks
                min_detection_confidence=0.3,
            )
            self._mesh.process(np.zeros((64, 64, 3), np.uint8))  # first run logs; do it quietly now
        self._lock = threading.Lock()

    def landmarks(self, image: np.ndarray, face: Face) -> np.ndarray | None:
        """Return (478, 3) float32 landmarks in image pixels, or None when the mesh finds no face.

        The mesh's own detector needs some context around the face: a few crop sizes are tried.
        """
        for scale in self.options.crop_scales:
            points = self._landmarks_in_crop(image, face, scale)
            if points is not None:
                return points
        return None

    def _landmarks_in_crop(self, image: np.ndarray, face: Face, scale: float) -> np.ndarray | None:
        height, width = image.shape[:2]
        x0, y0, x1, y1 = face.box
        side = max(x1 - x0, y1 - y0) * scale
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        left, top = int(max(0, cx - side / 2)), int(max(0, cy - side / 2))
        right, bottom = int(min(width, cx + side / 2)), int(min(height, cy + side / 2))
        crop = np.ascontiguousarray(image[top:bottom, left:right])
        if crop.shape[0] < 16 or crop.shape[1] < 16:
            return None
        with self._lock:
            result = self._mesh.process(crop)
        if not result.multi_face_landmarks:
            return None
        points = np.array([(p.x, p.y, p.z) for p in result.multi_face_landmarks[0].landmark], dtype=np.float32)
        crop_h, crop_w = crop.shape[:2]
        points[:, 0] = points[:, 0] * crop_w + left
        points[:, 1] = points[:, 1] * crop_h + top
        points[:, 2] = points[:, 2] * crop_w
        return points

    def close(self) -> None:
        self._mesh.close()

    def __enter__(self) -> FaceMesher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@lru_cache(maxsize=1)
def topology() -> dict:
    """Mesh topology as plain data: contours (ordered index loops), triangles and the canonical face.

    Stored in core/data/mesh_topology.json (built by scripts/build_mesh_topology.py from the
    mediapipe connection sets and a frontal average of the CC0 portraits).
    """
    with open(DATA_DIR / "mesh_topology.json", encoding="utf-8") as handle:
        data = json.load(handle)
    data["triangles"] = np.asarray(data["triangles"], dtype=np.int32)
    data["canonical"] = np.asarray(data["canonical"], dtype=np.float32)
    return data
