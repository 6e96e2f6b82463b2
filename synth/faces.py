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
        raise GlowAIError(f"{folder}: not a folder; --faces needs a folder of face photos "
                          "(or a .npz from `glowai synth faces`)")
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


FACES_FILE_FORMAT = 1


def save_faces(faces: dict[str, SourceFace], path: Path, quality: int = 95) -> int:
    """Write prepared faces to one .npz, so `glowai synth --faces FILE.npz` runs where the face
    detector and mesh cannot (a training machine without mediapipe), and without redoing them.

    Pixels are WebP at `quality` (101: lossless), masks and landmarks exact; the regions were
    fitted to the original crop. Written atomically; returns the file's size in bytes.
    """
    import io
    import json

    from core.files import write_atomic

    arrays: dict[str, np.ndarray] = {}
    meta = []
    for i, (identity, face) in enumerate(sorted(faces.items())):
        ok, encoded = cv2.imencode(".webp", cv2.cvtColor(face.image, cv2.COLOR_RGB2BGR),
                                   [cv2.IMWRITE_WEBP_QUALITY, int(quality)])
        if not ok:
            raise GlowAIError(f"{identity}: could not encode the face as WebP")
        arrays[f"{i}.image"] = encoded.reshape(-1)
        arrays[f"{i}.skin"] = np.packbits(face.regions.skin)
        arrays[f"{i}.zone_map"] = face.regions.zone_map.astype(np.uint8)
        arrays[f"{i}.landmarks"] = np.asarray(face.landmarks, np.float32)
        parts = sorted(face.regions.parts)
        for name in parts:
            arrays[f"{i}.part.{name}"] = np.packbits(face.regions.parts[name])
        meta.append({"identity": identity, "shape": list(face.image.shape[:2]), "ita": face.ita, "tone": face.tone,
                     "light": list(face.light), "light_strength": face.light_strength, "credit": face.credit,
                     "zone_names": list(face.regions.zone_names), "backend": face.regions.backend,
                     "skin_lab_median": list(face.regions.skin_lab_median), "parts": parts})
    arrays["meta"] = np.frombuffer(json.dumps({"format": FACES_FILE_FORMAT, "faces": meta}).encode(), np.uint8)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    write_atomic(Path(path), buffer.getvalue())
    return buffer.tell()


def load_faces(path: Path, size: int | None = None) -> dict[str, SourceFace]:
    """Prepared faces from `save_faces`; a file that is not one, or of another size, is a GlowAIError."""
    import json
    import zipfile

    try:
        with np.load(path, allow_pickle=False) as data:
            info = json.loads(data["meta"].tobytes().decode())
            if info.get("format") != FACES_FILE_FORMAT:
                raise GlowAIError(f"{path}: prepared faces of format {info.get('format')}, this version reads "
                                  f"{FACES_FILE_FORMAT}; prepare them again with `glowai synth faces`")
            faces = {}
            for i, item in enumerate(info["faces"]):
                shape = tuple(item["shape"])
                if size is not None and shape != (size, size):
                    raise GlowAIError(f"{path}: faces of {shape[1]}x{shape[0]} px, this run needs {size}x{size}")
                image = cv2.imdecode(data[f"{i}.image"], cv2.IMREAD_COLOR)
                if image is None or image.shape[:2] != shape:
                    raise GlowAIError(f"{path}: face {item['identity']} does not decode")

                def unpack(key: str, shape=shape) -> np.ndarray:
                    return np.unpackbits(data[key], count=shape[0] * shape[1]).reshape(shape).astype(bool)

                regions = FaceRegions(unpack(f"{i}.skin"), data[f"{i}.zone_map"], tuple(item["zone_names"]),
                                      {name: unpack(f"{i}.part.{name}") for name in item["parts"]},
                                      item["backend"], tuple(item["skin_lab_median"]))
                faces[item["identity"]] = SourceFace(
                    item["identity"], np.ascontiguousarray(image[..., ::-1]), regions, data[f"{i}.landmarks"],
                    float(item["ita"]), item["tone"], tuple(item["light"]), float(item["light_strength"]),
                    item["credit"])
    except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile, json.JSONDecodeError) as err:
        raise GlowAIError(f"{path}: not a prepared-faces file from `glowai synth faces` "
                          f"({type(err).__name__})") from None
    if not faces:
        raise GlowAIError(f"{path}: holds no faces")
    return faces
