"""Quality control of one synthetic sample, with automatic reject rules.

Metrics (all recorded in the manifest):
- outside_change: pixels outside the mask that differ from the clean face (must be 0);
- delta_e: mean CIE76 colour difference inside the mask (below the floor the defect is invisible);
- area_pct: mask area as % of the face's skin;
- ring_contrast: CIE76 difference between the mean colour inside the mask and a 4-px ring around
  it, in the generated image (how much the defect stands out from its surroundings);
- edge_ratio: mean gradient on the mask border over the mean gradient of the skin. A realism
  proxy: a pasted sticker has a hard border (high ratio), real skin changes blend in.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import cv2
import numpy as np

from core.colour import rgb_to_lab
from core.labels import CONDITIONS


@dataclass(frozen=True)
class QCRules:
    min_delta_e: float = 2.5  # about one just-noticeable difference
    min_area_pct: float = 0.05
    max_area_pct: float = 60.0
    max_edge_ratio: float = 6.0


@dataclass(frozen=True)
class QCResult:
    outside_change: int
    delta_e: float
    area_pct: float
    ring_contrast: float
    edge_ratio: float
    accepted: bool
    reason: str  # "" when accepted

    def as_dict(self) -> dict:
        return asdict(self)


def quality(clean: np.ndarray, image: np.ndarray, mask: np.ndarray, skin: np.ndarray,
            rules: QCRules | None = None) -> QCResult:
    """Measure a sample (RGB uint8 clean and image, uint8 class mask, bool skin) and apply `rules`."""
    rules = rules or QCRules()
    inside = mask > 0
    outside_change = int((image[~inside] != clean[~inside]).any(axis=1).sum())
    area_pct = 100.0 * inside.sum() / max(int(skin.sum()), 1)
    if not inside.any():
        return QCResult(outside_change, 0.0, 0.0, 0.0, 0.0, False, "empty mask")
    lab_clean, lab_image = rgb_to_lab(clean), rgb_to_lab(image)
    delta_e = float(np.linalg.norm(lab_image[inside] - lab_clean[inside], axis=1).mean())
    ring = cv2.dilate(inside.astype(np.uint8), np.ones((9, 9), np.uint8)).astype(bool) & ~inside & skin
    ring_contrast = float(np.linalg.norm(lab_image[inside].mean(0) - lab_image[ring].mean(0))) if ring.any() else 0.0
    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32)
    gradient = np.hypot(cv2.Sobel(gray, cv2.CV_32F, 1, 0), cv2.Sobel(gray, cv2.CV_32F, 0, 1))
    border = inside & ~cv2.erode(inside.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    edge_ratio = float(gradient[border].mean() / max(float(gradient[skin].mean()), 1e-6))
    reason = ""
    if outside_change:
        reason = f"{outside_change} pixels changed outside the mask"
    elif delta_e < rules.min_delta_e:
        reason = f"invisible: mean delta E {delta_e:.1f} < {rules.min_delta_e}"
    elif not rules.min_area_pct <= area_pct <= rules.max_area_pct:
        reason = f"mask area {area_pct:.2f}% of skin outside [{rules.min_area_pct}, {rules.max_area_pct}]"
    elif edge_ratio > rules.max_edge_ratio:
        reason = f"sticker-like border: edge ratio {edge_ratio:.1f} > {rules.max_edge_ratio}"
    return QCResult(outside_change, round(delta_e, 3), round(area_pct, 3), round(ring_contrast, 3),
                    round(edge_ratio, 3), not reason, reason)


def class_pixels(mask: np.ndarray) -> dict[str, int]:
    counts = np.bincount(mask.ravel(), minlength=len(CONDITIONS) + 1)
    return {label.name: int(counts[label.index]) for label in CONDITIONS}
