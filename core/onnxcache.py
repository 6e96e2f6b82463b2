"""The ONNX Runtime forms of a torch network, made once and kept in the weights cache: the fp32
export (dynamic height and width) and its static int8 quantization. Each is written in a work
folder beside its target and renamed into place, so a killed export or quantization leaves no half
file; the work folders of killed runs are swept once they are an hour old."""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import numpy as np


def export_onnx(model, target: Path) -> None:
    """`model` (a torch module taking (1, 3, H, W) float32) as one self-contained .onnx file."""
    import onnx
    import torch

    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".export-") as work:
        side = {2: torch.export.Dim("height", min=32, max=4096), 3: torch.export.Dim("width", min=32, max=4096)}
        exported = Path(work) / "model.onnx"
        torch.onnx.export(model.float(), (torch.zeros(1, 3, 64, 64),), str(exported), input_names=["image"],
                          output_names=["logits"], dynamic_shapes=(side,), dynamo=True, verbose=False)
        single = Path(work) / "single.onnx"
        onnx.save_model(onnx.load(str(exported)), str(single), save_as_external_data=False)
        single.replace(target)


def quantize_int8(source: Path, target: Path, inputs: list[np.ndarray]) -> None:
    """Static int8 quantization of the .onnx `source` (QDQ, per-channel int8 weights, uint8
    activations with the reduced range that AVX2 kernels need), calibrated on `inputs`: network
    inputs ("image") prepared exactly as the model will see them."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter({"image": x} for x in inputs)

        def get_next(self):
            return next(self.items, None)

    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".quantize-") as work:
        prepared, quantized = Path(work) / "prepared.onnx", Path(work) / "int8.onnx"
        quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
        quantize_static(str(prepared), str(quantized), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        reduce_range=True, weight_type=QuantType.QInt8, activation_type=QuantType.QUInt8)
        quantized.replace(target)


def remove_stale_work(folder: Path, max_age_s: float = 3600.0) -> None:
    """Work folders of exports or quantizations killed over `max_age_s` ago (a live one is younger)."""
    for work in [*folder.glob(".export-*"), *folder.glob(".quantize-*")] if folder.is_dir() else []:
        try:
            if time.time() - work.stat().st_mtime > max_age_s:
                shutil.rmtree(work, ignore_errors=True)
        except OSError:
            continue
