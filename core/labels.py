"""The label registry: one ordered list of segmentation classes used everywhere.

Index i of `LABELS` is the pixel value i in every label map and mask PNG, the channel i of
every probability tensor, and the order of legends, reports and dataset manifests.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Label:
    index: int
    name: str
    title: str
    color: tuple[int, int, int]  # RGB uint8, used for overlays and legends
    description: str


LABELS: tuple[Label, ...] = (
    Label(0, "background", "Background", (0, 0, 0), "Skin without a detected condition, or not skin."),
    Label(1, "acne", "Acne", (230, 57, 70), "Small raised spots: papules, pustules and comedones."),
    Label(2, "redness", "Redness", (255, 159, 28), "Diffuse pink or red patches, often on cheeks and nose."),
    Label(3, "texture", "Texture", (46, 196, 182), "Uneven surface: enlarged pores and rough areas."),
    Label(4, "dryness", "Dryness", (114, 137, 255), "Flaky or tight-looking patches with fine lines."),
)

CONDITIONS: tuple[Label, ...] = LABELS[1:]
"""The four skin conditions (every label but background)."""

NUM_CLASSES = len(LABELS)


def label_by_name(name: str) -> Label:
    """Return the label called `name`; unknown names fail with the list of valid ones."""
    for label in LABELS:
        if label.name == name:
            return label
    valid = ", ".join(label.name for label in LABELS)
    raise KeyError(f"unknown label {name!r}; valid labels: {valid}")
