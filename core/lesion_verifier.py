"""A second look at acne lesion candidates: a small CNN that scores a 32x32 patch around each peak of
the segmentation model's lesion heatmap.

The U-Net's heatmap finds lesions by their local response; many of its weaker peaks are real
lesions it was unsure of, many others are flat red or brown post-acne marks, pores and shine that
the experts do not circle. The verifier sees each candidate at the analysed photo's own resolution
(RGB with the patch's mean colour removed, so skin tone and white balance matter less, plus the
heatmap itself; a "relative" verifier also divides each channel by that mean, so the same lesion
on darker skin or in dimmer light, whose colours differ by less in absolute terms, looks the same)
and gives the probability that an expert would circle it. A candidate's score is the geometric
mean of its peak heat and that probability (`combined_score`).

Trained by scripts/train_lesion_verifier.py on the ACNE04 training photos (the segmentation
model's candidates there, labelled by the expert circles, plus the circle centres themselves);
calibrated by scripts/calibrate_lesion_verifier.py on acne04-dev. Runs on ONNX Runtime from a
graph built here from the safetensors weights (BatchNorm folded), so the analysis never imports
torch; `build_verifier` is the same network in torch, for training.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from core.errors import WeightsError

PATCH = 32  # patch side, analysed pixels
RGB_SPREAD = 0.08  # RGB (0-1) deviations from the patch mean are divided by this
# "relative" contrast: deviations over (mean + RELATIVE_FLOOR) * RELATIVE_SPREAD, the same scale as
# RGB_SPREAD at a mid-tone mean of 0.55
RELATIVE_SPREAD, RELATIVE_FLOOR = 0.15, 0.02
CONTRASTS = ("absolute", "relative")
CHANNELS = 4  # R, G, B, lesion heat
# (kind, width multiplier): 3x3 conv + BatchNorm + ReLU blocks and 2x2 max pools, then global
# average pooling and one linear unit. The torch module indices follow this list.
LAYOUT = (("conv", 1), ("conv", 1), ("pool", 0), ("conv", 2), ("conv", 2), ("pool", 0), ("conv", 4), ("pool", 0),
          ("conv", 4))
BN_EPS = 1e-5


def cut_patches(image: np.ndarray, heat: np.ndarray, points: np.ndarray, margin: int = 0,
                heat_origin: tuple[int, int] = (0, 0)) -> np.ndarray:
    """Raw patches around `points` (float (N, >=2) x, y in pixels of `image`): float32
    (N, 4, PATCH + 2 margin, same), RGB in [0, 1] (reflected at the photo's border) and `heat`
    (float, 0 outside it), whose pixel (0, 0) is the image's `heat_origin` (x, y): a crop's heatmap
    needs no full-frame copy. `margin` extra pixels each side leave room for jitter."""
    half = PATCH // 2 + margin
    side = 2 * half
    out = np.zeros((len(points), CHANNELS, side, side), np.float32)
    if not len(points):
        return out
    padded_heat = np.pad(heat.astype(np.float32, copy=False), ((half, half), (half, half)))
    padded = None
    height, width = image.shape[:2]
    for i, (x, y) in enumerate(np.asarray(points)[:, :2]):
        col = int(np.clip(round(float(x)), 0, width - 1))
        row = int(np.clip(round(float(y)), 0, height - 1))
        top, left = row - half, col - half
        if 0 <= top and top + side <= height and 0 <= left and left + side <= width:
            out[i, :3] = image[top:top + side, left:left + side].transpose(2, 0, 1)
        else:  # at the border: the photo mirrored (padded once, only when a point needs it)
            if padded is None:
                padded = np.pad(image, ((half, half), (half, half), (0, 0)), mode="reflect")
            out[i, :3] = padded[row:row + side, col:col + side].transpose(2, 0, 1)
        hr, hc = row - heat_origin[1], col - heat_origin[0]
        if -side < hr < padded_heat.shape[0] and -side < hc < padded_heat.shape[1]:  # else it misses the heatmap
            window = padded_heat[max(0, hr):max(0, hr + side), max(0, hc):max(0, hc + side)]
            out[i, 3, max(0, -hr):max(0, -hr) + window.shape[0], max(0, -hc):max(0, -hc) + window.shape[1]] = window
    out[:, :3] *= np.float32(1 / 255)
    return out


def normalise(raw: np.ndarray, contrast: str = "absolute") -> np.ndarray:
    """The network's input from raw PATCH x PATCH patches (as `cut_patches` with margin 0): RGB
    minus each patch's mean colour, over RGB_SPREAD ("absolute") or over that mean colour itself
    ("relative": each channel's ratio to the patch's own colour, see RELATIVE_SPREAD); the heat as
    it is."""
    if contrast not in CONTRASTS:
        raise ValueError(f"contrast {contrast!r}: use one of {CONTRASTS}")
    out = np.array(raw, np.float32)
    rgb = out[:, :3]
    mean = rgb.mean(axis=(2, 3), keepdims=True)
    rgb -= mean
    if contrast == "relative":
        rgb /= (mean + np.float32(RELATIVE_FLOOR)) * np.float32(RELATIVE_SPREAD)
    else:
        rgb *= np.float32(1 / RGB_SPREAD)
    return out


def combined_score(heat: np.ndarray, probability: np.ndarray) -> np.ndarray:
    """A candidate's score: the geometric mean of its peak heat and the verifier's probability."""
    return np.sqrt(np.asarray(heat, np.float32) * np.asarray(probability, np.float32))


def build_verifier(width: int = 16, channels: int = CHANNELS):
    """The verifier network in torch (for training): LAYOUT with `width` base channels, reading the
    first `channels` of the patch channels (3: RGB only, 4: RGB and heat)."""
    from torch import nn

    layers: list = []
    for kind, multiplier in LAYOUT:
        if kind == "pool":
            layers.append(nn.MaxPool2d(2))
        else:
            out = width * multiplier
            layers.append(nn.Sequential(nn.Conv2d(channels, out, 3, padding=1, bias=False), nn.BatchNorm2d(out),
                                        nn.ReLU(inplace=True)))
            channels = out
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, 1)]
    return nn.Sequential(*layers)


def _onnx_graph(tensors: dict[str, np.ndarray]):
    """The ONNX model of LAYOUT from a torch state dict (numpy), BatchNorm folded into the convs;
    it reads as many patch channels as the first convolution has inputs."""
    from onnx import TensorProto, helper, numpy_helper

    if "0.0.weight" not in tensors:
        raise WeightsError("lesion verifier: tensor '0.0.weight' missing; not a verifier checkpoint")
    channels = int(tensors["0.0.weight"].shape[1])
    nodes, inits = [], []
    current = "patches"
    for index, (kind, _) in enumerate(LAYOUT):
        name = f"l{index}"
        if kind == "pool":
            nodes.append(helper.make_node("MaxPool", [current], [name], kernel_shape=[2, 2], strides=[2, 2]))
        else:
            try:
                weight = tensors[f"{index}.0.weight"].astype(np.float32)
                gamma, beta = tensors[f"{index}.1.weight"], tensors[f"{index}.1.bias"]
                mean, var = tensors[f"{index}.1.running_mean"], tensors[f"{index}.1.running_var"]
            except KeyError as err:
                raise WeightsError(f"lesion verifier: tensor {err} missing; not a verifier checkpoint") from None
            factor = (gamma / np.sqrt(var + BN_EPS)).astype(np.float32)
            inits += [numpy_helper.from_array(weight * factor[:, None, None, None], f"{name}.w"),
                      numpy_helper.from_array((beta - mean * factor).astype(np.float32), f"{name}.b")]
            nodes += [helper.make_node("Conv", [current, f"{name}.w", f"{name}.b"], [f"{name}.c"], pads=[1, 1, 1, 1]),
                      helper.make_node("Relu", [f"{name}.c"], [name])]
        current = name
    head = len(LAYOUT) + 2  # after the pooling and flatten modules
    try:
        weight, bias = tensors[f"{head}.weight"].astype(np.float32), tensors[f"{head}.bias"].astype(np.float32)
    except KeyError as err:
        raise WeightsError(f"lesion verifier: tensor {err} missing; not a verifier checkpoint") from None
    inits += [numpy_helper.from_array(weight.T.copy(), "fc.w"), numpy_helper.from_array(bias, "fc.b")]
    nodes += [helper.make_node("GlobalAveragePool", [current], ["gap"]),
              helper.make_node("Flatten", ["gap"], ["flat"]),
              helper.make_node("Gemm", ["flat", "fc.w", "fc.b"], ["logit"]),
              helper.make_node("Sigmoid", ["logit"], ["probability"])]
    graph = helper.make_graph(nodes, "lesion_verifier", [helper.make_tensor_value_info(
        "patches", TensorProto.FLOAT, ["n", channels, PATCH, PATCH])],
        [helper.make_tensor_value_info("probability", TensorProto.FLOAT, ["n", 1])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


class LesionVerifier:
    """Loads a verifier checkpoint (safetensors; its sha256 checked when given) once; `score` gives
    each candidate's probability. Thread-safe (one ONNX Runtime session)."""

    def __init__(self, path: Path, sha256: str | None = None, threads: int | None = None) -> None:
        import onnxruntime as ort
        from safetensors import SafetensorError, safe_open

        from weights import verify

        path = Path(path)
        if not path.is_file():
            raise WeightsError(f"{path}: lesion verifier weights not found")
        verify(path, sha256)
        try:
            with safe_open(str(path), "np") as handle:
                tensors = {name: handle.get_tensor(name) for name in handle.keys()}
                self.contrast = (handle.metadata() or {}).get("contrast", "absolute")
        except (SafetensorError, OSError, ValueError) as err:
            raise WeightsError(f"{path.name}: not a readable safetensors file ({str(err)[:80]})") from None
        if self.contrast not in CONTRASTS:
            raise WeightsError(f"{path.name}: unknown contrast {self.contrast!r} in its metadata")
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        graph = _onnx_graph(tensors)
        self.channels = int(tensors["0.0.weight"].shape[1])  # 3: RGB only; 4: RGB and heat
        self.session = ort.InferenceSession(graph.SerializeToString(), options, providers=["CPUExecutionProvider"])

    def probabilities(self, patches: np.ndarray) -> np.ndarray:
        """float32 (N,) from normalised patches (N, 4, PATCH, PATCH)."""
        if not len(patches):
            return np.zeros(0, np.float32)
        patches = np.ascontiguousarray(patches[:, :self.channels], np.float32)
        return self.session.run(None, {"patches": patches})[0][:, 0]

    def score(self, image: np.ndarray, heat: np.ndarray, points: np.ndarray,
              heat_origin: tuple[int, int] = (0, 0)) -> np.ndarray:
        """Each candidate's probability: `points` (N, >=2) x, y in pixels of `image` (RGB uint8),
        `heat` the lesion heatmap, 0 off skin, its pixel (0, 0) at the image's `heat_origin`."""
        return self.probabilities(normalise(cut_patches(image, heat, points, heat_origin=heat_origin), self.contrast))


def verifier_metadata(width: int, extra: dict | None = None, channels: int = CHANNELS,
                      contrast: str = "absolute") -> dict[str, str]:
    """safetensors metadata of a verifier checkpoint."""
    return {"kind": "glowai-lesion-verifier", "width": str(width), "channels": str(channels), "contrast": contrast,
            "layout": json.dumps(LAYOUT),
            **{k: json.dumps(v) for k, v in (extra or {}).items()}}
