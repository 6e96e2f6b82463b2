"""Training data: synthetic samples (pixel masks) and real ACNE04 photos (expert lesion circles).

Both kinds become the same training example: an RGB uint8 image, a class-index mask (255 =
unknown, where no pixel label exists: real photos have none for redness, texture or dryness)
and a list of lesion circles (x, y, radius in the image's pixels). `augment` draws one random
patch of either kind; `lesion_heatmap` turns its circles into the lesion-centre target.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from core.errors import GlowAIError
from core.imageio import load_image
from core.labels import label_by_name

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
IGNORE = 255  # mask value: no pixel label here (the loss skips it)
ACNE = label_by_name("acne").index


@dataclass
class Example:
    """image: RGB uint8 HxWx3. mask: uint8 HxW class index or IGNORE. lesions: float32 (N, 3)
    circles x, y, radius in image pixels (acne lesion centres). real: an ACNE04 photo."""

    image: np.ndarray
    mask: np.ndarray
    lesions: np.ndarray
    real: bool
    name: str


def load_synth_split(data: Path, split: str, limit: int | None = None) -> list[Example]:
    """A synthetic dataset's `split` (held-out identities for "val"); lesion centres are the
    connected components of the acne mask, radius from their area."""
    manifest_path = data / "manifest.parquet"
    if not manifest_path.is_file():
        raise GlowAIError(f"{data}: no manifest.parquet; make a dataset with `glowai synth` first")
    manifest = pd.read_parquet(manifest_path)
    rows = manifest[manifest["split"] == split].sort_values("id")
    if limit is not None and len(rows):
        rows = rows.iloc[np.linspace(0, len(rows) - 1, min(limit, len(rows))).round().astype(int)]
    if rows.empty:
        raise GlowAIError(f"{data}: no {split} samples in the manifest")
    examples = []
    for row in rows.itertuples():
        image = cv2.cvtColor(cv2.imread(str(data / row.image)), cv2.COLOR_BGR2RGB)
        mask = cv2.imread(str(data / row.mask), cv2.IMREAD_UNCHANGED)
        examples.append(Example(image, mask, mask_lesions(mask), False, str(row.id)))
    return examples


def mask_lesions(mask: np.ndarray) -> np.ndarray:
    """Circles (x, y, radius) of the acne components of a class-index mask."""
    count, _, stats, centroids = cv2.connectedComponentsWithStats((mask == ACNE).astype(np.uint8), connectivity=8)
    if count <= 1:
        return np.zeros((0, 3), np.float32)
    radius = np.sqrt(stats[1:, cv2.CC_STAT_AREA] / np.pi)
    return np.column_stack([centroids[1:], radius]).astype(np.float32)


def acne04_circles(data: Path) -> dict[str, np.ndarray]:
    """File name -> float64 (N, 3) expert lesion circles (x, y, radius) in the pixels of the photo
    as decoded (upright) from `data`/images, for every photo the ACNE04-v2 file lists (photos it
    does not list have no circles). The file's coordinates are in its own width x height (ACNE04:
    the original photos, scaled here to the 640x640 copies); a listed photo that is missing keeps
    640x640."""
    lesion_file = Path(data) / "acne04v2_lesions.json"
    if not lesion_file.is_file():
        raise GlowAIError(f"{lesion_file}: lesion annotations missing; pass an ACNE04-like folder "
                          "(images/ + acne04v2_lesions.json)")
    raw = json.loads(lesion_file.read_text())
    images = {img["id"]: img for img in raw["images"]}
    sizes = {img["file_name"]: _upright_size(Path(data) / "images" / img["file_name"]) for img in raw["images"]}
    circles: dict[str, list] = {img["file_name"]: [] for img in raw["images"]}
    for ann in raw["annotations"]:
        img = images[ann["image_id"]]
        width, height = sizes[img["file_name"]]
        sx, sy = width / img["width"], height / img["height"]
        x, y = ann["coordinates"]
        circles[img["file_name"]].append((x * sx, y * sy, ann["radius"] * (sx + sy) / 2))
    return {name: np.array(c, np.float64).reshape(-1, 3) for name, c in circles.items()}


def _upright_size(path: Path) -> tuple[int, int]:
    """(width, height) of a photo after its EXIF orientation, from the header only; 640x640 when
    the file is missing or unreadable."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            width, height = image.size
            turned = image.getexif().get(0x0112, 1) in (5, 6, 7, 8)
    except (OSError, UnidentifiedImageError):
        return 640, 640
    return (height, width) if turned else (width, height)


def load_acne04(data: Path, names: list[str] | None = None) -> list[Example]:
    """ACNE04 photos with circles as examples; the mask is IGNORE everywhere (no pixel labels)."""
    data = Path(data)
    circles = acne04_circles(data)
    examples = []
    for name in sorted(circles) if names is None else names:
        path = data / "images" / name
        if name not in circles or not path.is_file():
            continue
        image = load_image(path)
        lesions = circles[name].astype(np.float32)
        if image.shape[:2] != (640, 640):  # training sees every photo at ACNE04's 640x640
            sx, sy = 640 / image.shape[1], 640 / image.shape[0]
            image = cv2.resize(image, (640, 640), interpolation=cv2.INTER_AREA)
            lesions = lesions * np.array([sx, sy, (sx + sy) / 2], np.float32)
        examples.append(Example(image, np.full(image.shape[:2], IGNORE, np.uint8), lesions, True, name))
    if not examples:
        raise GlowAIError(f"{data}/images: no photo with lesion circles")
    return examples


def augment(example: Example, patch: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A random patch: flip, rotation +/-15 degrees, scale 0.8-1.25 (one warp), colour jitter,
    noise. Returns (image, mask, lesions) in patch pixels; lesions outside the patch are dropped."""
    image, mask, lesions = example.image, example.mask, example.lesions
    height, width = mask.shape
    # centre: on a lesion (or a labelled condition) half of the time, else anywhere in the middle
    if len(lesions) and rng.random() < 0.5:
        x, y, _ = lesions[rng.integers(len(lesions))]
        cy, cx = y + rng.normal(0, patch / 6), x + rng.normal(0, patch / 6)
    elif not example.real and rng.random() < 0.5 and (labelled := np.nonzero((mask > 0) & (mask != IGNORE)))[0].size:
        pick = rng.integers(labelled[0].size)
        cy, cx = labelled[0][pick] + rng.normal(0, patch / 6), labelled[1][pick] + rng.normal(0, patch / 6)
    else:
        cy, cx = rng.uniform(0.2, 0.8) * height, rng.uniform(0.2, 0.8) * width
    angle, scale = rng.uniform(-15, 15), rng.uniform(0.8, 1.25)
    matrix = cv2.getRotationMatrix2D((float(cx), float(cy)), angle, scale)
    matrix[:, 2] += (patch / 2 - cx, patch / 2 - cy)
    out_image = cv2.warpAffine(image, matrix, (patch, patch), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
    out_mask = cv2.warpAffine(mask, matrix, (patch, patch), flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_REFLECT_101)
    out_lesions = np.zeros((0, 3), np.float32)
    if len(lesions):
        xy = lesions[:, :2] @ matrix[:, :2].T + matrix[:, 2]
        out_lesions = np.column_stack([xy, lesions[:, 2] * scale]).astype(np.float32)
    if rng.random() < 0.5:
        out_image, out_mask = out_image[:, ::-1], out_mask[:, ::-1]
        out_lesions[:, 0] = patch - 1 - out_lesions[:, 0]
    inside = (out_lesions[:, 0] >= 0) & (out_lesions[:, 0] < patch) & (out_lesions[:, 1] >= 0) & (out_lesions[:, 1] < patch)
    x = out_image.astype(np.float32)
    x = (x - x.mean()) * rng.uniform(0.85, 1.15) + x.mean() * rng.uniform(0.85, 1.15)  # contrast, brightness
    grey = x.mean(axis=2, keepdims=True)
    x = grey + (x - grey) * rng.uniform(0.85, 1.15)  # saturation
    x += rng.normal(0, rng.uniform(0, 4), x.shape)  # sensor noise
    return np.clip(x, 0, 255).astype(np.uint8), np.ascontiguousarray(out_mask), out_lesions[inside]


def lesion_heatmap(shape: tuple[int, int], lesions: np.ndarray, min_sigma: float = 1.0) -> np.ndarray:
    """float32 HxW target: a Gaussian of sigma max(min_sigma, radius / 2) around every lesion
    centre, the maximum where they overlap, exactly 1 at each centre's pixel."""
    heat = np.zeros(shape, np.float32)
    for x, y, radius in lesions:
        sigma = max(min_sigma, float(radius) / 2)
        reach = int(np.ceil(3 * sigma))
        cx, cy = int(round(float(x))), int(round(float(y)))
        x0, x1 = max(0, cx - reach), min(shape[1], cx + reach + 1)
        y0, y1 = max(0, cy - reach), min(shape[0], cy + reach + 1)
        if x0 >= x1 or y0 >= y1:
            continue
        gx = np.exp(-((np.arange(x0, x1) - cx) ** 2) / (2 * sigma**2))
        gy = np.exp(-((np.arange(y0, y1) - cy) ** 2) / (2 * sigma**2))
        np.maximum(heat[y0:y1, x0:x1], np.outer(gy, gx), out=heat[y0:y1, x0:x1])
    return heat


def to_tensor(images: list[np.ndarray]):
    """NCHW float32 tensor, ImageNet-normalised, from RGB uint8 HWC images of one size."""
    import torch

    x = np.stack(images).astype(np.float32) / 255.0
    x = (x - np.array(IMAGENET_MEAN, np.float32)) / np.array(IMAGENET_STD, np.float32)
    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
