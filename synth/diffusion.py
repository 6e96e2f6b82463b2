"""Diffusion inpainting generator: Stable Diffusion 1.5 inpainting (+ IP-Adapter) paints skin conditions.

Each condition in a target label map is inpainted in a crop around it, upscaled to the model's
work size, and pasted back only inside its own mask. The returned mask is measured, not assumed:
a pixel is labelled only where the paste changed it, and every other pixel is the clean pixel
exactly, so image and mask agree pixel for pixel.

Weights come from the registry (`weights/registry.json`: "sd15-inpainting", "ip-adapter-sd15")
through the local Hugging Face cache, or the Hub at a pinned revision when the network is allowed.
Nothing is loaded at import; the pipeline is built on the first `generate`.
"""

from __future__ import annotations

import itertools
import threading
import weakref
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

import cv2
import numpy as np
from PIL import Image

import weights
from core.errors import WeightsError
from core.labels import CONDITIONS, NUM_CLASSES

if TYPE_CHECKING:
    from diffusers import StableDiffusionInpaintPipeline

try:  # Hugging Face ZeroGPU: a GPU is attached only while a function wrapped in spaces.GPU runs
    import spaces
except ImportError:
    spaces = None

PROMPTS: dict[str, str] = {
    "acne": "close-up photo of facial skin with red inflamed acne papules and pustules, small whiteheads, "
            "natural skin texture and pores, realistic, sharp focus",
    "redness": "close-up photo of facial skin with diffuse flushed redness, pink blotchy irritated patches, "
               "faint visible capillaries, natural skin texture, realistic, sharp focus",
    "texture": "close-up photo of facial skin with enlarged pores, rough uneven bumpy skin texture, "
               "natural lighting, realistic, sharp focus",
    "dryness": "close-up photo of facial skin with dry flaky peeling skin, fine cracks and dehydration lines, "
               "dull rough patches, realistic, sharp focus",
}
NEGATIVE_PROMPT = ("makeup, blush, lipstick, foundation, concealer, cartoon, painting, illustration, 3d render, "
                   "blurry, smooth plastic skin, airbrushed, oversaturated, deformed, text, watermark, logo, hair")


@dataclass(frozen=True)
class DiffusionOptions:
    model: str = "sd15-inpainting"  # registry name of a diffusers inpainting repo
    ip_adapter: str | None = "ip-adapter-sd15"  # registry name; None = no reference image steering
    steps: int = 30
    guidance_scale: float = 7.5
    ip_adapter_scale: float = 0.6
    work_size: int = 512  # long side of the crop the model sees (small masks are upscaled); a multiple of 8
    context: float = 1.0  # margin around the mask bbox, in units of the bbox's long side
    dilation: int = 4  # px (at work size) the inpaint mask is grown
    feather: int = 6  # px (at work size) of feathering used when blending the crop back
    change_threshold: int = 3  # a pixel is "changed" when any RGB channel moved by more than this (uint8)
    device: str = "cpu"
    allow_network: bool = False  # may missing weights be downloaded (at the pinned revision)?

    def __post_init__(self) -> None:
        checks = [
            (self.steps >= 1, f"steps must be >= 1, got {self.steps}"),
            (self.work_size >= 64 and self.work_size % 8 == 0, f"work_size must be a multiple of 8 >= 64, got {self.work_size}"),
            (self.context >= 0 and self.dilation >= 0 and self.feather >= 0, "context, dilation and feather must be >= 0"),
            (0 <= self.change_threshold < 255, f"change_threshold must be in 0..254, got {self.change_threshold}"),
            (self.guidance_scale >= 0 and self.ip_adapter_scale >= 0, "guidance_scale and ip_adapter_scale must be >= 0"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(f"DiffusionOptions: {message}")


def locate_repo(spec: weights.WeightSpec, allow_network: bool, required: tuple[str, ...]) -> str:
    """Where diffusers should read the Hub repo of `spec` from, without downloading anything here.

    Returns the local snapshot folder when the Hugging Face cache already holds the `required`
    files (the cached "main" when no revision is pinned), else `spec.repo` when it may be
    downloaded: the revision is pinned (and the sha256 of a single-file spec), `allow_network` is
    set and HF_HUB_OFFLINE is not. Otherwise raises a `WeightsError` that says what to do.
    """
    from huggingface_hub import snapshot_download

    try:
        folder = Path(snapshot_download(spec.repo, revision=spec.revision, allow_patterns=list(required),
                                        local_files_only=True))
        if all((folder / name).is_file() for name in required):
            return str(folder)
    except Exception:  # noqa: BLE001 - any miss in the local HF cache means "not here"
        pass
    files = "".join(f" {name}" for name in required) if spec.filename else ""
    fetch = f"`hf download {spec.repo}{files}" + (f" --revision {spec.revision}`" if spec.revision else "`")
    pins = "revision and sha256" if spec.filename else "revision"
    if not spec.revision or (spec.filename and not spec.sha256):
        raise WeightsError(f"model {spec.name!r} ({spec.repo}) is not in the Hugging Face cache and has no pinned "
                           f"{pins}; run {fetch} where there is a network, or pin its {pins} in weights/registry.json")
    if not (allow_network and weights.network_allowed()):
        raise WeightsError(f"model {spec.name!r} ({spec.repo}) is not in the Hugging Face cache and downloads are off; "
                           f"run {fetch} first, or use allow_network=True without HF_HUB_OFFLINE=1")
    return spec.repo


_PIPELINES: dict[int, StableDiffusionInpaintPipeline] = {}
"""Loaded pipelines by generator handle. ZeroGPU runs `_inpaint` in a forked process and pickles its
arguments, so the pipeline is looked up here (the fork inherits it) instead of being passed."""
_HANDLES = itertools.count()


def _inpaint(handle: int, device: str, seed: int, kwargs: dict) -> np.ndarray:
    """One pipeline call -> float RGB (H, W, 3) in [0, 1]. Wrapped with spaces.GPU on ZeroGPU."""
    import torch

    generator = torch.Generator(device).manual_seed(seed)
    return _PIPELINES[handle](**kwargs, generator=generator, output_type="np").images[0]


_inpaint_on_gpu = spaces.GPU(_inpaint) if spaces is not None else _inpaint


def _resize(image: np.ndarray, width: int, height: int) -> np.ndarray:
    shrink = width * height < image.shape[0] * image.shape[1]
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_CUBIC)


def _crop_box(mask: np.ndarray, context: float) -> tuple[int, int, int, int]:
    """(y0, y1, x0, x1): the bbox of `mask` grown by `context` x its long side, clipped to the image."""
    ys, xs = np.nonzero(mask)
    y0, y1, x0, x1 = int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1
    margin = int(np.ceil(context * max(y1 - y0, x1 - x0)))
    height, width = mask.shape
    return max(0, y0 - margin), min(height, y1 + margin), max(0, x0 - margin), min(width, x1 + margin)


def _work_shape(height: int, width: int, work_size: int) -> tuple[int, int]:
    """(h, w) with the long side `work_size`, both multiples of 8 (at least 8)."""
    scale = work_size / max(height, width)
    return max(8, round(height * scale / 8) * 8), max(8, round(width * scale / 8) * 8)


class DiffusionGenerator:
    """Paints skin conditions onto a clean face with an inpainting pipeline. Thread-safe."""

    def __init__(self, options: DiffusionOptions | None = None,
                 pipeline: StableDiffusionInpaintPipeline | None = None) -> None:
        """`pipeline`: an already built StableDiffusionInpaintPipeline, used as is (tests inject a tiny
        one); `options.model` and `options.ip_adapter` are then not read, and the IP-Adapter is used
        when the pipeline has one loaded. Without it, the registry weights are located now (a
        `WeightsError` says what to do when they cannot be had) and loaded on the first `generate`.
        """
        self.options = options or DiffusionOptions()
        self._lock = threading.Lock()
        self._handle = next(_HANDLES)
        self._injected = pipeline is not None
        weakref.finalize(self, _PIPELINES.pop, self._handle, None)
        if pipeline is not None:
            _PIPELINES[self._handle] = pipeline
            from diffusers.models.embeddings import MultiIPAdapterImageProjection

            self._uses_ip_adapter = isinstance(getattr(pipeline.unet, "encoder_hid_proj", None),
                                               MultiIPAdapterImageProjection)
            return
        self._model_spec = weights.get_spec(self.options.model)
        if self._model_spec.task != "inpainting" or not self._model_spec.repo or self._model_spec.filename:
            raise WeightsError(f"model {self._model_spec.name!r} is not a diffusers inpainting repository; "
                               "use a registry entry with task 'inpainting' (e.g. sd15-inpainting)")
        self._model_source = locate_repo(self._model_spec, self.options.allow_network, ("model_index.json",))
        self._uses_ip_adapter = self.options.ip_adapter is not None
        if self._uses_ip_adapter:
            self._ip_spec = weights.get_spec(self.options.ip_adapter)
            if self._ip_spec.task != "ip-adapter" or not (self._ip_spec.repo and self._ip_spec.filename):
                raise WeightsError(f"model {self._ip_spec.name!r} is not an IP-Adapter; "
                                   "use a registry entry with task 'ip-adapter' (e.g. ip-adapter-sd15)")
            encoder = str(PurePosixPath(self._ip_spec.filename).parent / "image_encoder")
            needed = (self._ip_spec.filename, f"{encoder}/config.json", f"{encoder}/model.safetensors")
            self._ip_source = locate_repo(self._ip_spec, self.options.allow_network, needed)

    def _load(self) -> StableDiffusionInpaintPipeline:
        """The registry pipeline: fp16 on CUDA, fp32 elsewhere, no safety checker, IP-Adapter loaded."""
        import torch
        from diffusers import StableDiffusionInpaintPipeline

        dtype = torch.float16 if torch.device(self.options.device).type == "cuda" else torch.float32
        spec = self._model_spec
        try:
            pipeline = StableDiffusionInpaintPipeline.from_pretrained(
                self._model_source, revision=spec.revision, dtype=dtype, safety_checker=None,
                requires_safety_checker=False)
            if self._uses_ip_adapter:
                spec = self._ip_spec
                weight = PurePosixPath(spec.filename)
                pipeline.load_ip_adapter(self._ip_source, subfolder=str(weight.parent), weight_name=weight.name,
                                         image_encoder_folder="image_encoder", revision=spec.revision)
                self._verify_ip_adapter()
        except (OSError, ValueError) as err:
            raise WeightsError(f"could not load {spec.name!r} from {spec.repo}: {str(err).splitlines()[0][:160]}; "
                               f"check the repo, its revision, or run `hf download {spec.repo}`") from None
        return pipeline.to(self.options.device)

    def _verify_ip_adapter(self) -> None:
        spec = self._ip_spec
        if not spec.sha256:
            return
        if Path(self._ip_source).is_dir():
            path = Path(self._ip_source) / spec.filename
        else:
            from huggingface_hub import hf_hub_download

            path = Path(hf_hub_download(spec.repo, spec.filename, revision=spec.revision, local_files_only=True))
        weights.verify(path, spec.sha256)

    def _check_inputs(self, clean: np.ndarray, target: np.ndarray, reference: np.ndarray | None, seed: int) -> None:
        def is_rgb(array: object) -> bool:
            return isinstance(array, np.ndarray) and array.dtype == np.uint8 and array.ndim == 3 and array.shape[2] == 3

        if not is_rgb(clean):
            raise ValueError("clean must be an RGB uint8 array of shape (H, W, 3); load it with core.imageio.load_image")
        if not (isinstance(target, np.ndarray) and target.dtype == np.uint8 and target.shape == clean.shape[:2]):
            got = f"{target.dtype} {target.shape}" if isinstance(target, np.ndarray) else type(target).__name__
            raise ValueError(f"target must be a uint8 class-index map of shape {clean.shape[:2]}, got {got}")
        unknown = sorted(set(np.unique(target).tolist()) - set(range(NUM_CLASSES)))
        if unknown:
            raise ValueError(f"target has unknown class values {unknown}; valid are 0..{NUM_CLASSES - 1} "
                             "(core.labels.LABELS)")
        if reference is not None and not is_rgb(reference):
            raise ValueError("reference must be an RGB uint8 array of shape (H, W, 3) or None")
        if reference is not None and not self._uses_ip_adapter:
            raise ValueError("a reference image needs an IP-Adapter; set DiffusionOptions.ip_adapter or pass reference=None")
        if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
            raise ValueError(f"seed must be a non-negative int, got {seed!r}")

    def generate(self, clean: np.ndarray, target: np.ndarray, reference: np.ndarray | None,
                 seed: int) -> tuple[np.ndarray, np.ndarray]:
        """Inpaint the conditions of `target` onto `clean`.

        Args:
            clean: RGB uint8 (H, W, 3), the face before.
            target: uint8 (H, W) class-index map (`core.labels.LABELS`: 0 background, 1 acne,
                2 redness, 3 texture, 4 dryness): where each condition should be painted.
            reference: RGB uint8 (h, w, 3) image of the wanted look, steering the IP-Adapter; None
                paints from the prompts alone (the adapter's scale is 0 for that call).
            seed: the same seed gives the same output; class c uses seed + c.

        Returns:
            (image, mask): image RGB uint8 (H, W, 3); mask uint8 (H, W) class-index map. Where
            mask == 0, image == clean exactly; where mask == c > 0, target == c and some channel
            moved by more than `change_threshold`. Parts of the target the model left (nearly)
            unchanged are background in the mask.
        """
        # 1. Check inputs.
        self._check_inputs(clean, target, reference, seed)
        options = self.options
        image, mask = clean.copy(), np.zeros(target.shape, np.uint8)
        present = [label for label in CONDITIONS if (target == label.index).any()]
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * options.dilation + 1, 2 * options.dilation + 1))
        with self._lock:
            if present and self._handle not in _PIPELINES:
                _PIPELINES[self._handle] = self._load()
            if present:
                _PIPELINES[self._handle].set_progress_bar_config(disable=True)
            if present and self._uses_ip_adapter:
                scale = options.ip_adapter_scale if reference is not None else 0.0
                _PIPELINES[self._handle].set_ip_adapter_scale(scale)
            for label in present:
                # 2. Crop around the class with context; resize so the long side is the work size.
                region = target == label.index
                y0, y1, x0, x1 = _crop_box(region, options.context)
                crop_h, crop_w = y1 - y0, x1 - x0
                work_h, work_w = _work_shape(crop_h, crop_w, options.work_size)
                work_image = _resize(image[y0:y1, x0:x1], work_w, work_h)
                work_region = _resize(region[y0:y1, x0:x1].astype(np.float32), work_w, work_h) > 0.01
                # 3. Inpaint inside the dilated class mask.
                inpaint_mask = cv2.dilate(work_region.astype(np.uint8), kernel)
                kwargs = dict(prompt=PROMPTS[label.name], negative_prompt=NEGATIVE_PROMPT,
                              image=Image.fromarray(work_image), mask_image=Image.fromarray(inpaint_mask * 255),
                              height=work_h, width=work_w, num_inference_steps=options.steps,
                              guidance_scale=options.guidance_scale)
                if self._uses_ip_adapter:  # a loaded adapter needs an image; with no reference its scale is 0
                    kwargs["ip_adapter_image"] = Image.fromarray(
                        reference if reference is not None else np.full((224, 224, 3), 128, np.uint8))
                result = _inpaint_on_gpu(self._handle, options.device, int(seed) + label.index, kwargs)
                painted = (np.clip(result, 0.0, 1.0) * 255.0).round().astype(np.uint8)
                # 4. Back to crop size, feathered blend into the running image, paste inside the class only.
                alpha = inpaint_mask.astype(np.float32)
                if options.feather:
                    alpha = cv2.GaussianBlur(alpha, (2 * options.feather + 1,) * 2, options.feather / 2)
                alpha = cv2.resize(alpha, (crop_w, crop_h), interpolation=cv2.INTER_LINEAR)[..., None]
                before = image[y0:y1, x0:x1].astype(np.float32)
                blended = before + alpha * (_resize(painted, crop_w, crop_h).astype(np.float32) - before)
                inside = region[y0:y1, x0:x1]
                image[y0:y1, x0:x1][inside] = np.clip(blended.round(), 0, 255).astype(np.uint8)[inside]
                # 5. Label what really changed; revert the rest of the class to the clean pixels.
                diff = np.abs(image[y0:y1, x0:x1].astype(np.int16) - clean[y0:y1, x0:x1].astype(np.int16))
                changed = (diff > options.change_threshold).any(axis=2)
                mask[y0:y1, x0:x1][inside & changed] = label.index
                mask[y0:y1, x0:x1][inside & ~changed] = 0
                image[y0:y1, x0:x1][inside & ~changed] = clean[y0:y1, x0:x1][inside & ~changed]
        return image, mask

    def close(self) -> None:
        """Drop a pipeline loaded from the registry (frees its memory; the next `generate` loads it
        again). An injected pipeline belongs to the caller and is kept."""
        with self._lock:
            if not self._injected:
                _PIPELINES.pop(self._handle, None)

    def __enter__(self) -> DiffusionGenerator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
