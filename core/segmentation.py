"""Blemish segmentation: a segmentation-models-pytorch network on the face crop, restricted to skin.

Runtimes (`SegmenterOptions.runtime`):
- "torch-fp32": reference path, any device.
- "torch-bf16": CPU bf16 autocast + channels_last (fast on CPUs with AVX512-BF16/AMX).
- "torch-fp16": CUDA fp16 autocast (the GPU path).
- "onnx": ONNX Runtime on CPU; the model is exported once to the cache (`glowai weights prepare`
  does it at set-up, so no visitor waits for it).
- "onnx-int8": ONNX Runtime with int8 weights and activations (static QDQ quantization,
  calibrated on the bundled CC0 portraits), cached beside the fp32 export.
- "auto": torch-fp16 on CUDA; on CPU the model's `cpu_runtime` when its registry entry names one
  (glowai-seg-v2: onnx-int8), else torch-bf16 where the CPU has native bf16, else onnx.
`bench/bench_segmentation.py` measures them against each other on this machine.
"""

from __future__ import annotations

import functools
import threading
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from core.errors import WeightsError
from core.labels import CONDITIONS, LABELS, NUM_CLASSES, label_by_name
from core.lesions import find_lesions, lesion_density, pixels
from core.maskops import mask_bounds
from core.netops import argmax_channels, blob, sigmoid, softmax

ACNE_INDEX = label_by_name("acne").index
RUNTIMES = ("auto", "torch-fp32", "torch-bf16", "torch-fp16", "onnx", "onnx-int8")
CALIBRATION_PHOTOS = Path(__file__).resolve().parents[1] / "data" / "examples"  # CC0, shipped with the repo


@dataclass(frozen=True)
class SegmenterOptions:
    weights: str | None = None  # registry name or .safetensors path; None = the registry default
    device: str = "cpu"
    runtime: str = "auto"
    allow_network: bool = False  # may the registry download hub weights?
    # class name -> decision threshold: that class is labelled exactly where its probability reaches
    # it (whether or not another class is likelier); None = the model spec's calibrated thresholds
    thresholds: dict[str, float] | None = None
    lesion_threshold: float | None = None  # lesion-head peaks kept from this value; None = the spec's
    lesion_count_threshold: float | None = None  # faint peaks counted from this value; None = the spec's
    keep_lesion_heat: bool = False  # return the full-frame lesion heatmap too (calibration, pictures)
    verify_lesions: bool = True  # run the spec's lesion verifier when it has one (False: heatmap peaks only)
    threads: int | None = None  # ONNX Runtime threads per call; None = one per core (1 when photos run side by side)


@dataclass
class Segmentation:
    """Per-pixel result in pixels of the analysed image.

    crop_probabilities: float32 (C, h, w), softmax over `core.labels.LABELS` inside `box`
        (x0, y0, x1, y1), the part of the image the network saw; `probabilities` is the same over the
        whole image (C, H, W), the background channel 1 outside the box, made only when asked for
        (the report needs the label map, not 20 MB of probabilities per megapixel).
        label_map: uint8 (H, W), argmax restricted to skin (0 elsewhere),
        except for classes with a decision threshold (`SegmenterOptions.thresholds`).
    lesions: for a model with a lesion head (`WeightSpec.lesion_head`), float32 (N, 3) acne lesion
        centres x, y (analysed pixels) and peak value, strongest first, on skin only; the acne class
        of label_map is then the heatmap blob around each centre. lesion_heat: that model's
        lesion-centre heatmap, float32 (H, W) in [0, 1], 0 outside the crop, when asked for
        (`SegmenterOptions.keep_lesion_heat`). faint_lesions: the same (N, 3) for the weaker peaks
        that reach the spec's `lesion_count_threshold` but not `lesion_threshold`: not marked, but
        counted, since the expert counts are matched best with them (scripts/calibrate_acne.py).
        lesion_density: for a model that counts by heatmap mass (`WeightSpec.lesion_count_mass`),
        float32 (H, W) estimated lesions per analysed pixel, 0 off skin: its sum over a region is that
        region's lesion count. input_scale: network input pixels per analysed pixel.
        lesion_candidates: with a lesion verifier (`WeightSpec.lesion_verifier`), float32 (N, 4) every
        peak it looked at, on skin: x, y, peak heat, verifier probability; `lesions` then hold their
        combined score (core.lesion_verifier.combined_score) as the third column.
        All None otherwise.
    """

    crop_probabilities: np.ndarray
    box: tuple[int, int, int, int]
    label_map: np.ndarray
    model: str
    runtime: str
    lesions: np.ndarray | None = None
    lesion_heat: np.ndarray | None = None
    faint_lesions: np.ndarray | None = None
    lesion_density: np.ndarray | None = None
    input_scale: float | None = None
    lesion_candidates: np.ndarray | None = None

    @functools.cached_property
    def probabilities(self) -> np.ndarray:
        """float32 (C, H, W) over the whole analysed image: `crop_probabilities` pasted into `box`."""
        full = np.zeros((NUM_CLASSES, *self.label_map.shape), np.float32)
        full[0] = 1.0
        x0, y0, x1, y1 = self.box
        full[:, y0:y1, x0:x1] = self.crop_probabilities
        return full

    @property
    def lesion_count(self) -> int | None:
        """The acne count the report gives: the lesion density's sum when the model counts by heatmap
        mass, else the marked and faint peaks; None without a lesion head."""
        if self.lesion_density is not None:
            return int(round(float(self.lesion_density.sum())))
        counted = self.counted_lesions
        return None if counted is None else len(counted)

    @property
    def counted_lesions(self) -> np.ndarray | None:
        """Every lesion the report counts: the marked ones, then the faint ones."""
        if self.lesions is None:
            return None
        return self.lesions if self.faint_lesions is None else np.concatenate([self.lesions, self.faint_lesions])


def apply_thresholds(probs: np.ndarray, labels: np.ndarray, thresholds: list[tuple[int, float]]) -> np.ndarray:
    """The label map under decision thresholds, from `probs` (C, h, w) and their argmax `labels`
    (uint8 h x w, C-contiguous, changed in place and returned). A thresholded class (index, t) is
    labelled exactly where its probability reaches t, whether or not another class is likelier
    (where two reach theirs, the likelier); a pixel whose likeliest class is a thresholded one below
    its threshold takes the likeliest class that is not below its own (background has none)."""
    if not thresholds:
        return labels
    if not labels.flags.c_contiguous:
        raise ValueError("apply_thresholds changes labels in place: pass a C-contiguous array")
    flat, by_pixel = labels.reshape(-1), probs.reshape(len(probs), -1)
    failing = []
    for index, threshold in thresholds:  # only the pixels the class won are looked at: few
        won = np.flatnonzero(flat == index)
        if won.size:
            failing.append(won[by_pixel[index, won] < threshold])
    failing = np.concatenate(failing) if failing else np.zeros(0, np.intp)
    if failing.size:
        candidates = by_pixel[:, failing]  # (C, n), a copy
        for index, threshold in thresholds:
            candidates[index][candidates[index] < threshold] = -1.0
        flat[failing] = candidates.argmax(axis=0)
    # a class at or above a threshold over one half is the argmax already: only lower ones promote
    promoting = [(index, threshold) for index, threshold in thresholds if threshold <= 0.5]
    if len(promoting) == 1:
        index, threshold = promoting[0]
        labels[probs[index] >= threshold] = index
    elif promoting:
        best = np.full(labels.shape, -1.0, np.float32)  # where two classes reach theirs, the likelier
        for index, threshold in promoting:
            wins = (probs[index] >= threshold) & (probs[index] > best)
            labels[wins] = index
            best[wins] = probs[index][wins]
    return labels


def build_model(arch: str, encoder: str, classes: int = NUM_CLASSES, **kwargs):
    """A segmentation_models_pytorch model with random init and no download (encoder_weights=None)."""
    import segmentation_models_pytorch as smp

    try:
        factory = getattr(smp, arch)
    except AttributeError:
        raise WeightsError(f"unknown architecture {arch!r}; use one of smp's: Unet, UnetPlusPlus, FPN, DeepLabV3Plus") from None
    return factory(encoder_name=encoder, encoder_weights=None, classes=classes, **kwargs)


def cpu_has_bf16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


class Segmenter:
    """Loads a checkpoint once; `segment(image, skin, box)` runs on the face crop. Thread-safe."""

    def __init__(self, options: SegmenterOptions | None = None) -> None:
        from weights import lookup, resolve

        self.options = options or SegmenterOptions()
        if self.options.runtime not in RUNTIMES:
            raise ValueError(f"unknown runtime {self.options.runtime!r}; valid: {', '.join(RUNTIMES)}")
        self.spec = lookup(self.options.weights)
        if tuple(self.spec.classes) != tuple(label.name for label in LABELS):
            raise WeightsError(f"model {self.spec.name!r} predicts {self.spec.classes}, GlowAI needs "
                               f"{tuple(label.name for label in LABELS)}")
        self._weights_path = resolve(self.spec, allow_network=self.options.allow_network)
        self.device_type = "cuda" if str(self.options.device).startswith("cuda") else "cpu"
        self.runtime = self._choose_runtime()
        self.model = None  # the torch network; an ONNX runtime whose export is cached never builds it (nor imports torch)
        if self.runtime.startswith("onnx"):
            self._onnx = self._onnx_session(self._weights_path)
        else:
            self._onnx = None
            self._load_torch()
        self._lock = threading.Lock()
        self.thresholds = self.decision_thresholds(
            self.options.thresholds if self.options.thresholds is not None else (self.spec.thresholds or {}))
        self.lesion_threshold = (self.options.lesion_threshold if self.options.lesion_threshold is not None
                                 else self.spec.lesion_threshold)
        count_threshold = (self.options.lesion_count_threshold if self.options.lesion_count_threshold is not None
                           else self.spec.lesion_count_threshold)
        self.lesion_count_threshold = min(self.lesion_threshold, count_threshold if count_threshold is not None
                                          else self.lesion_threshold)
        self.use_verifier(self.spec.lesion_verifier if self.spec.lesion_head and self.options.verify_lesions else None)

    def use_verifier(self, entry: dict | None) -> None:
        """Load a lesion verifier as `WeightSpec.lesion_verifier` describes it ("file" relative to
        weights/ or absolute, "sha256", "floor", "count_scale"); None runs without one."""
        self.verifier, self.verifier_floor, self.verifier_count_scale = None, 1.0, 0.0
        if entry:
            from core.lesion_verifier import LesionVerifier
            from weights import WEIGHTS_DIR

            self.verifier = LesionVerifier(WEIGHTS_DIR / entry["file"], entry.get("sha256"), self.options.threads)
            self.verifier_floor = float(entry["floor"])
            self.verifier_count_scale = float(entry.get("count_scale", 0.0))

    def decision_thresholds(self, thresholds: dict[str, float]) -> list[tuple[int, float]]:
        """Class name -> threshold as `apply_thresholds` takes them, for this model: with a lesion
        head, acne is never labelled from its channel's argmax (the heatmap's blobs are the acne)."""
        unknown = set(thresholds) - {label.name for label in CONDITIONS}
        if unknown:
            raise ValueError(f"thresholds for unknown classes {sorted(unknown)}")
        listed = [(label.index, float(thresholds[label.name])) for label in CONDITIONS if label.name in thresholds]
        if self.spec.lesion_head:
            listed = [(i, t) for i, t in listed if i != ACNE_INDEX] + [(ACNE_INDEX, float("inf"))]
        return listed

    def label_crop(self, crop_probs: np.ndarray, blobs: np.ndarray | None,
                   thresholds: list[tuple[int, float]] | None = None) -> np.ndarray:
        """uint8 labels of the crop from its probabilities (C, h, w): the argmax under the decision
        thresholds (these, from `decision_thresholds`, or the model's), then acne on the lesion
        head's `blobs` (bool h x w; None without a lesion head)."""
        labels = apply_thresholds(crop_probs, argmax_channels(crop_probs),
                                  self.thresholds if thresholds is None else thresholds)
        if blobs is not None:
            labels[blobs] = ACNE_INDEX
        return labels

    def _load_torch(self) -> None:
        import torch

        from weights import load_state_dict

        path = self._weights_path
        tensors, _ = load_state_dict(path)
        model = build_model(self.spec.arch, self.spec.encoder, classes=NUM_CLASSES + int(self.spec.lesion_head),
                            **(self.spec.arch_kwargs or {}))
        try:
            model.load_state_dict(tensors, strict=True)
        except RuntimeError as err:
            raise WeightsError(f"{path.name} does not fit {self.spec.arch}/{self.spec.encoder}: "
                               f"{str(err).splitlines()[0][:120]}") from None
        self.device = torch.device(self.options.device)
        model.to(self.device).eval()
        if self.runtime == "torch-bf16":
            model = model.to(memory_format=torch.channels_last)
        self.model = model

    def _choose_runtime(self) -> str:
        runtime = self.options.runtime
        if runtime == "auto":
            if self.device_type == "cuda":
                return "torch-fp16"
            if self.spec.cpu_runtime:  # the model's own, checked for accuracy when it was shipped
                if self.spec.cpu_runtime not in RUNTIMES or self.spec.cpu_runtime in ("auto", "torch-fp16"):
                    raise WeightsError(f"{self.spec.name}: cpu_runtime {self.spec.cpu_runtime!r} is not a CPU "
                                       f"runtime ({', '.join(RUNTIMES)})")
                return self.spec.cpu_runtime
            return "torch-bf16" if cpu_has_bf16() else "onnx"
        if runtime in ("onnx", "onnx-int8", "torch-bf16") and self.device_type != "cpu":
            raise ValueError(f"runtime {runtime!r} is a CPU path; use torch-fp16 or torch-fp32 on {self.options.device}")
        return runtime

    def _onnx_session(self, weights_path: Path):
        import onnxruntime as ort

        from core.onnxcache import export_onnx, quantize_int8, remove_stale_work
        from weights import cache_dir, sha256_file

        digest = self.spec.sha256 or sha256_file(weights_path)  # a registry sha256 was checked by resolve()
        stem = cache_dir() / "onnx" / f"{self.spec.name}-{digest[:16]}"
        target, quantized = stem.with_suffix(".onnx"), stem.with_name(stem.name + "-int8.onnx")
        wanted = quantized if self.runtime == "onnx-int8" else target
        if not wanted.is_file():
            remove_stale_work(target.parent)
            if not target.is_file():
                if self.model is None:
                    self._load_torch()
                export_onnx(self.model, target)
            if wanted is quantized:
                quantize_int8(target, quantized, self._calibration_inputs())
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if self.options.threads:
            options.intra_op_num_threads = self.options.threads
        return ort.InferenceSession(str(wanted), options, providers=["CPUExecutionProvider"])

    def _calibration_inputs(self) -> list[np.ndarray]:
        """Network inputs of the faces in the bundled CC0 portraits (and their mirror images), which
        calibrate the int8 model's activation ranges."""
        from core.imageio import load_image
        from core.pipeline import AnalyzeOptions, Analyzer

        inputs = []
        with Analyzer(AnalyzeOptions(segment=False)) as analyzer:
            for photo in sorted(CALIBRATION_PHOTOS.glob("*.jpg")):
                image = load_image(photo)
                for view in (image, np.ascontiguousarray(image[:, ::-1])):
                    analysis = analyzer.analyze(view)
                    inputs.append(self._network_input(analysis.image, analysis.regions.skin)[0])
        if not inputs:
            raise WeightsError(f"no calibration photos in {CALIBRATION_PHOTOS} for the int8 model")
        return inputs

    def segment(self, image: np.ndarray, skin: np.ndarray) -> Segmentation:
        """Probabilities and a skin-restricted label map for an RGB uint8 image.

        The model sees the bounding box of `skin` (bool HxW), padded by 4 % and resized so its
        long side is the spec's input_size, then padded to a multiple of 32.
        """
        height, width = image.shape[:2]
        label_map = np.zeros((height, width), np.uint8)
        if not skin.any():
            return Segmentation(np.zeros((NUM_CLASSES, 0, 0), np.float32), (0, 0, 0, 0), label_map, self.spec.name,
                                self.runtime)
        # 1-2. Crop around the skin, resize and pad to the network's input.
        x, (x0, y0, x1, y1), (new_h, new_w) = self._network_input(image, skin)
        # 3. Forward pass.
        if self._onnx is not None:  # an ONNX Runtime session runs concurrent calls safely
            logits = self._forward(x)[0, :, :new_h, :new_w]
        else:
            with self._lock:
                logits = self._forward(x)[0, :, :new_h, :new_w]
        # 4. Softmax over the classes, back to crop size, paste.
        heat = sigmoid(logits[NUM_CLASSES]) if self.spec.lesion_head else None
        probs = softmax(logits[:NUM_CLASSES])
        crop_size = (x1 - x0, y1 - y0)
        crop_probs = np.empty((NUM_CLASSES, crop_size[1], crop_size[0]), np.float32)
        for channel, p in enumerate(probs):
            cv2.resize(p, crop_size, dst=crop_probs[channel], interpolation=cv2.INTER_LINEAR)
        # 5. Lesions, then labels (argmax, decision thresholds, lesion blobs), restricted to skin.
        lesions = lesion_heat = faint = density = blobs = candidates = None
        input_scale = new_w / crop_size[0]
        if heat is not None:
            crop_heat = cv2.resize(heat, crop_size, interpolation=cv2.INTER_LINEAR)
            if self.options.keep_lesion_heat:
                lesion_heat = np.zeros((height, width), np.float32)
                lesion_heat[y0:y1, x0:x1] = crop_heat
            lesions, faint, blobs, candidates = self._lesions(crop_heat, skin[y0:y1, x0:x1], image, (x0, y0))
            verifier_counts = candidates is not None and self.verifier_count_scale > 0
            if self.spec.lesion_count_mass or verifier_counts:
                density = np.zeros((height, width), np.float32)
                if self.spec.lesion_count_mass:
                    density[y0:y1, x0:x1] = lesion_density(crop_heat, skin[y0:y1, x0:x1],
                                                           self.spec.lesion_count_floor or 0.0,
                                                           self.spec.lesion_count_mass, input_scale)
                if verifier_counts:  # each candidate adds count_scale * its p**2
                    rows, cols = pixels(candidates, height, width)
                    np.add.at(density, (rows, cols), np.float32(self.verifier_count_scale) * candidates[:, 3] ** 2)
        label_map[y0:y1, x0:x1] = self.label_crop(crop_probs, blobs)
        label_map[~skin] = 0
        return Segmentation(crop_probs, (x0, y0, x1, y1), label_map, self.spec.name, self.runtime, lesions,
                            lesion_heat, faint, density, input_scale, candidates)

    def _network_input(self, image: np.ndarray, skin: np.ndarray) -> tuple[np.ndarray, tuple, tuple[int, int]]:
        """The normalised (1, 3, H, W) float32 input for the bounding box of `skin` (padded by 4 %,
        long side input_size, padded to a multiple of 32), that box (x0, y0, x1, y1) and the
        unpadded network size (h, w)."""
        height, width = image.shape[:2]
        bx, by, bw, bh = mask_bounds(skin)
        pad = int(0.04 * (max(bw, bh) - 1)) + 2
        y0, y1 = max(0, by - pad), min(height, by + bh + pad)
        x0, x1 = max(0, bx - pad), min(width, bx + bw + pad)
        crop = image[y0:y1, x0:x1]
        scale = self.spec.input_size / max(crop.shape[:2])
        new_h, new_w = max(32, round(crop.shape[0] * scale)), max(32, round(crop.shape[1] * scale))
        resized = cv2.resize(crop, (new_w, new_h), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
        pad_h, pad_w = (-new_h) % 32, (-new_w) % 32
        padded = cv2.copyMakeBorder(resized, 0, pad_h, 0, pad_w, cv2.BORDER_REFLECT_101)
        return blob(padded, self.spec.mean, self.spec.std), (x0, y0, x1, y1), (new_h, new_w)

    def _lesions(self, crop_heat: np.ndarray, crop_skin: np.ndarray, image: np.ndarray,
                 origin: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
        """`core.lesions.find_lesions` with this model's thresholds and verifier."""
        return find_lesions(crop_heat, crop_skin, image, origin, self.lesion_threshold, self.lesion_count_threshold,
                            self.verifier, self.verifier_floor)

    def _forward(self, x: np.ndarray) -> np.ndarray:
        if self._onnx is not None:
            return self._onnx.run(None, {"image": x})[0]
        import torch

        tensor = torch.from_numpy(x).to(self.device)
        with torch.inference_mode():
            if self.runtime == "torch-bf16":
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    out = self.model(tensor.contiguous(memory_format=torch.channels_last))
            elif self.runtime == "torch-fp16":
                with torch.autocast("cuda", dtype=torch.float16):
                    out = self.model(tensor)
            else:
                out = self.model(tensor)
        return out.float().cpu().numpy()

    def close(self) -> None:
        self._onnx = None


    def __enter__(self) -> Segmenter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

