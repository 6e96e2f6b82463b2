"""Generate tab handlers: a clean face, a mask (sampled or painted) and a defect reference in; a
labelled synthetic sample with its QC figures out. Diffusion (SD 1.5 inpainting + IP-Adapter)
when a GPU and its weights are present, procedural rendering otherwise."""

from __future__ import annotations

import threading
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

import weights
from apps.demo.handlers import CONDITION_TITLES, UserError, friendly_errors, gpu
from core.imageio import load_image
from core.labels import CONDITIONS, label_by_name
from synth.faces import FacePreparer, SourceFace
from synth.masks import layout_from_drawing, layout_target, sample_layout
from synth.procedural import render
from synth.qc import class_pixels, quality

MASK_MODES = ("Sample by class and severity", "Paint the mask")
_LOCK = threading.Lock()  # the face preparer and the diffusion pipeline serve one request at a time


def diffusion_ready() -> bool:
    """A GPU and the diffusion weights (on disk, or downloadable because the network is on)."""
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a core dependency
        return False
    if not torch.cuda.is_available():
        return False
    spec = weights.get_spec("sd15-inpainting")
    return weights.is_installed(spec) or weights.network_allowed()


def backend_note() -> str:
    if diffusion_ready():
        return ("**Generator: diffusion** (Stable Diffusion 1.5 inpainting, steered by the defect reference "
                "through IP-Adapter) on the GPU. The first sample loads the model.")
    return ("**Generator: procedural** (CPU rendering of lesions in Lab colour space; the defect reference is "
            "not used). Diffusion runs where a GPU and its weights are present.")


@lru_cache(maxsize=1)
def preparer() -> FacePreparer:
    return FacePreparer(size=512)


@lru_cache(maxsize=1)
def diffusion():
    from synth.diffusion import DiffusionGenerator, DiffusionOptions

    return DiffusionGenerator(DiffusionOptions(device="cuda", allow_network=weights.network_allowed()))


def prepare_face(photo: str | None):
    """Crop the clean face to 512 px -> (editor value to paint on, face state, message)."""
    if not photo:
        return None, None, "Upload a clean face (or pick an example)."
    with friendly_errors(), _LOCK:
        face = preparer().prepare(Path(photo))
    if face is None:
        raise UserError("No usable face: it must be a colour photo with one clear, front-facing face.", title="No face")
    editor = {"background": face.image, "layers": [], "composite": face.image}
    return editor, face, f"Face ready ({face.tone} skin tone, ITA {face.ita:.0f}°). Sample a mask or paint one."


def painted_mask(editor: dict | None, shape: tuple[int, int]) -> np.ndarray:
    """Union of the painted strokes (any layer, alpha > 0) at the face's size."""
    layers = (editor or {}).get("layers") or []
    painted = np.zeros(shape, bool)
    for layer in layers:
        array = load_image(layer) if isinstance(layer, str) else np.asarray(layer)
        alpha = array[..., 3] > 0 if array.ndim == 3 and array.shape[2] == 4 else array.max(axis=-1) > 0
        if alpha.shape != shape:
            alpha = cv2.resize(alpha.astype(np.uint8), shape[::-1], interpolation=cv2.INTER_NEAREST).astype(bool)
        painted |= alpha
    return painted


def _names(titles: list[str]) -> list[str]:
    return [label.name for label in CONDITIONS if label.title in titles]


@gpu
def run_generate(face: SourceFace | None, mode: str, classes: list[str], severity: float, painted_class: str,
                 editor: dict | None, reference: str | None, seed: float):
    """-> (clean vs sample slider, annotated mask, QC table rows, status)."""
    if face is None:
        raise UserError("Upload a clean face first (or pick an example).", title="No face yet")
    level = int(severity)
    rng = np.random.default_rng(int(seed))
    if mode == MASK_MODES[1]:
        painted = painted_mask(editor, face.image.shape[:2])
        if not painted.any():
            raise UserError("Paint over the skin where the condition should appear, then press Generate.")
        layout = layout_from_drawing(face, {_names([painted_class])[0]: painted}, level, rng)
    else:
        names = _names(classes)
        if not names:
            raise UserError(f"Choose at least one condition: {', '.join(CONDITION_TITLES)}.")
        layout = sample_layout(face, {name: level for name in names}, rng)
    with friendly_errors(), _LOCK:
        if diffusion_ready():
            ref = load_image(reference) if reference else None
            target = layout_target(layout, face.image.shape[:2])
            image, mask = diffusion().generate(face.image, target, ref, seed=int(rng.integers(2**31)))
            backend = "diffusion"
        else:
            rendered = render(face, layout, rng)
            image, mask, backend = rendered.image, rendered.mask, "procedural"
    qc = quality(face.image, image, mask, face.regions.skin)
    pixels = class_pixels(mask)
    masks = [((mask == label_by_name(name).index).astype(np.float32), label_by_name(name).title)
             for name, count in pixels.items() if count > 0]
    rows = [["accepted", "yes" if qc.accepted else f"no: {qc.reason}"],
            ["mean colour change (delta E)", f"{qc.delta_e:.2f}"],
            ["mask area (% of skin)", f"{qc.area_pct:.2f}"],
            ["contrast with surrounding skin", f"{qc.ring_contrast:.2f}"],
            ["edge ratio (sticker-like above 6)", f"{qc.edge_ratio:.2f}"],
            ["pixels changed outside the mask", str(qc.outside_change)]]
    rows += [[f"{label_by_name(name).title} pixels", str(count)] for name, count in pixels.items()]
    reference_note = " The defect reference is used only by diffusion." if reference and backend == "procedural" else ""
    status = f"Made with the **{backend}** generator, seed {int(seed)}, severity {level}.{reference_note}"
    return (face.image, image), (image, masks), rows, status
