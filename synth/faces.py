"""Source faces for synthesis: a square crop around the face, its regions, skin tone and light."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from core.colour import ita_category, ita_degrees, rgb_to_lab
from core.detection import FaceDetector
from core.errors import GlowAIError
from core.imageio import load_image
from core.mesh import FaceMesher
from core.regions import FaceRegions, face_regions

TONE_BUCKETS = ("very light", "light", "intermediate", "tan", "brown", "dark")  # ITA categories


@dataclass
class SourceFace:
    """A clean face ready for synthesis, at `size` x `size` pixels (RGB uint8).

    light: unit 2-vector (x right, y down) pointing towards the brighter side of the face, from a
    plane fitted to skin lightness; light_strength: L* change across the face along it.
    """

    identity: str
    image: np.ndarray
    regions: FaceRegions
    landmarks: np.ndarray
    ita: float
    tone: str
    light: tuple[float, float]
    light_strength: float
    credit: str

    @property
    def unit(self) -> float:
        """Outer eye-corner distance in pixels: the scale of every lesion size."""
        return float(np.linalg.norm(self.landmarks[263, :2] - self.landmarks[33, :2]))


def read_credits(folder: Path) -> dict[str, str]:
    """File name -> source line, from a CREDITS.md of markdown links `[name](url)` if there is one."""
    path = folder / "CREDITS.md"
    if not path.is_file():
        return {}
    return {name: url for name, url in re.findall(r"\[([^\]]+)\]\(([^)]+)\)", path.read_text(encoding="utf-8"))}


def face_paths(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise GlowAIError(f"{folder}: not a folder; --faces needs a folder of face photos")
    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png", ".webp"))
    if not paths:
        raise GlowAIError(f"{folder}: no .jpg/.png/.webp photos found")
    return paths


class FacePreparer:
    """Crops, re-detects and maps source faces. Holds the detector and mesh; call close()."""

    def __init__(self, size: int = 512) -> None:
        self.size = size
        self.detector = FaceDetector()
        self.mesher = FaceMesher()

    def prepare(self, path: Path, credit: str = "") -> SourceFace | None:
        """The face in `path` as a SourceFace, or None when no face (or no mesh) is found."""
        image = load_image(path)
        if _is_greyscale(image):
            return None  # conditions are colour changes: a grey photo cannot carry them
        faces = self.detector.detect(image)
        if not faces:
            return None
        # 1. Square crop around the face (1.7 box sizes, a little above centre), reflected at borders.
        x0, y0, x1, y1 = faces[0].box
        side = int(1.7 * max(x1 - x0, y1 - y0))
        cx, cy = int((x0 + x1) / 2), int((y0 + y1) / 2 - 0.05 * side)
        pad = side
        padded = cv2.copyMakeBorder(image, pad, pad, pad, pad, cv2.BORDER_REFLECT_101)
        crop = padded[cy - side // 2 + pad: cy - side // 2 + pad + side, cx - side // 2 + pad: cx - side // 2 + pad + side]
        interpolation = cv2.INTER_AREA if side > self.size else cv2.INTER_CUBIC
        crop = np.ascontiguousarray(cv2.resize(crop, (self.size, self.size), interpolation=interpolation))
        # 2. Landmarks and regions on the crop itself, so masks align with the stored pixels.
        faces = self.detector.detect(crop)
        landmarks = self.mesher.landmarks(crop, faces[0]) if faces else None
        if landmarks is None:
            return None
        regions = face_regions(crop, landmarks)
        if regions.skin.sum() < 0.05 * self.size * self.size:
            return None
        # 3. Skin tone and the light direction over the skin.
        lightness, _, b = regions.skin_lab_median
        ita = ita_degrees(lightness, b)
        light, strength = _light_direction(crop, regions.skin)
        return SourceFace(path.stem, crop, regions, landmarks, ita, ita_category(ita), light, strength, credit)

    def close(self) -> None:
        self.detector.close()
        self.mesher.close()


def _is_greyscale(image: np.ndarray) -> bool:
    small = image[::8, ::8].astype(np.int16)
    return bool(np.abs(small[..., 0] - small[..., 1]).mean() < 2 and np.abs(small[..., 1] - small[..., 2]).mean() < 2)


def _light_direction(image: np.ndarray, skin: np.ndarray) -> tuple[tuple[float, float], float]:
    ys, xs = np.nonzero(skin)
    lightness = rgb_to_lab(image)[..., 0][ys, xs]
    span = max(np.ptp(xs), np.ptp(ys), 1)
    design = np.stack([(xs - xs.mean()) / span, (ys - ys.mean()) / span, np.ones_like(xs, float)], axis=1)
    (gx, gy, _), *_ = np.linalg.lstsq(design, lightness, rcond=None)
    norm = float(np.hypot(gx, gy))
    if norm < 1e-6:
        return (-0.5, -0.8), 0.0  # flat light: assume the usual light from above left
    return (float(gx / norm), float(gy / norm)), norm
