"""Evaluation of the analysis core on reference folders: skin regions and face detection."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from tqdm import tqdm

from core.detection import DetectorOptions, FaceDetector
from core.errors import GlowAIError
from core.imageio import load_image
from core.mesh import FaceMesher
from core.regions import RegionOptions, face_regions

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")
CELEBAMASK_SKIN = (1, 2)  # CelebAMask-HQ ids: 1 skin, 2 nose


def _images(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise GlowAIError(f"{folder}: not a folder; pass a folder of photos")
    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise GlowAIError(f"{folder}: no .jpg/.png/.webp photos found")
    return paths


def eval_regions(data: Path, options: RegionOptions | None = None, progress: bool = True) -> dict:
    """IoU of our skin mask against CelebAMask-HQ skin (classes 1 skin + 2 nose).

    `data` holds images/NAME.jpg and masks/NAME.png (pixel = CelebAMask-HQ class id, any size:
    our mask is resized to the ground truth with nearest neighbour). A face that is not found
    counts as IoU 0 and is listed in `missed`.
    """
    data = Path(data)
    from PIL import Image

    per_image: dict[str, float] = {}
    missed: list[str] = []
    with FaceDetector() as detector, FaceMesher() as mesher:
        for path in tqdm(_images(data / "images"), desc="regions", disable=not progress):
            mask_path = data / "masks" / f"{path.stem}.png"
            if not mask_path.is_file():
                raise GlowAIError(f"{mask_path}: ground-truth mask missing; each image needs masks/<stem>.png")
            truth = np.isin(np.asarray(Image.open(mask_path)), CELEBAMASK_SKIN)
            image = load_image(path)
            faces = detector.detect(image)
            landmarks = mesher.landmarks(image, faces[0]) if faces else None
            if landmarks is None:
                missed.append(path.name)
                per_image[path.name] = 0.0
                continue
            skin = face_regions(image, landmarks, options).skin
            if skin.shape != truth.shape:
                skin = np.asarray(Image.fromarray(skin).resize(truth.shape[::-1], Image.NEAREST))
            union = np.logical_or(skin, truth).sum()
            per_image[path.name] = float(np.logical_and(skin, truth).sum() / union) if union else 1.0
    values = np.array(list(per_image.values()))
    return {
        "mean_iou": round(float(values.mean()), 4),
        "median_iou": round(float(np.median(values)), 4),
        "missed": missed,
        "count": len(values),
        "per_image": {k: round(v, 4) for k, v in per_image.items()},
    }


def eval_detection(data: Path, progress: bool = True) -> dict:
    """How many one-face photos in `data` get a face, and from which backend."""
    paths = _images(Path(data))
    by_backend: dict[str, int] = {}
    missed: list[str] = []
    with FaceDetector(DetectorOptions(backend="auto")) as detector:
        for path in tqdm(paths, desc="detection", disable=not progress):
            faces = detector.detect(load_image(path))
            if faces:
                by_backend[faces[0].backend] = by_backend.get(faces[0].backend, 0) + 1
            else:
                missed.append(path.name)
    return {"total": len(paths), "found": len(paths) - len(missed), "by_backend": by_backend, "missed": missed}


CELEBAMASK_LIPS = (11, 12)  # upper lip, lower lip


def eval_makeup(data: Path, progress: bool = True) -> dict:
    """Extracted lip colour against each reference's own lip pixels (from its parsing mask).

    `data` holds images/makeup/NAME.jpg and parsing/makeup/NAME.png (CelebAMask-HQ ids). The error
    is CIEDE2000 between the extracted colour and the mean Lab of the parsed lip pixels.
    """
    from PIL import Image
    from skimage.color import deltaE_ciede2000

    from core.colour import rgb_to_lab
    from core.filters.makeup import extract_makeup, hex_to_lab
    from core.pipeline import AnalyzeOptions, Analyzer

    data = Path(data)
    per_image: dict[str, float] = {}
    missed: list[str] = []
    with Analyzer(AnalyzeOptions(segment=False)) as analyzer:
        for path in tqdm(_images(data / "images" / "makeup"), desc="makeup", disable=not progress):
            parsing_path = data / "parsing" / "makeup" / f"{path.stem}.png"
            if not parsing_path.is_file():
                raise GlowAIError(f"{parsing_path}: parsing mask missing")
            try:
                analysis = analyzer.analyze(path)
            except GlowAIError:
                missed.append(path.name)
                continue
            preset = extract_makeup(analysis.image, analysis.landmarks, analysis.regions.skin)
            parsing = np.asarray(Image.open(parsing_path).resize(analysis.image.shape[1::-1], Image.NEAREST))
            lip = np.isin(parsing, CELEBAMASK_LIPS)
            if "lips" not in preset.regions or not lip.any():
                missed.append(path.name)
                continue
            truth = rgb_to_lab(analysis.image)[lip].mean(axis=0)
            got = hex_to_lab(preset.regions["lips"].color)
            per_image[path.name] = float(deltaE_ciede2000(truth[None], got[None])[0])
    values = np.array(list(per_image.values()))
    return {
        "median_de2000": round(float(np.median(values)), 3) if len(values) else None,
        "mean_de2000": round(float(values.mean()), 3) if len(values) else None,
        "p90_de2000": round(float(np.quantile(values, 0.9)), 3) if len(values) else None,
        "count": len(values),
        "missed": missed,
        "per_image": {k: round(v, 3) for k, v in per_image.items()},
    }
