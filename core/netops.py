"""Array kernels around the segmentation network: its input blob and the softmax, sigmoid and
argmax over its (C, H, W) outputs, written channel by channel because numpy's reductions over the
outer axis of such views are several times slower (core/segmentation.py uses them)."""

from __future__ import annotations

import cv2
import numpy as np


def blob(image: np.ndarray, mean: tuple[float, ...], std: tuple[float, ...]) -> np.ndarray:
    """(1, 3, H, W) float32 network input of an RGB uint8 image: (x / 255 - mean) / std per channel,
    in one pass of OpenCV's blob maker (twice as fast as numpy's convert, scale, shift and transpose)."""
    params = cv2.dnn.Image2BlobParams()
    params.scalefactor = tuple(1.0 / (255.0 * float(s)) for s in std) + (0.0,)
    params.mean = tuple(255.0 * float(m) for m in mean) + (0.0,)
    params.swapRB = False
    params.ddepth = cv2.CV_32F
    params.datalayout = cv2.dnn.DNN_LAYOUT_NCHW
    params.paddingmode = cv2.dnn.DNN_PMODE_NULL
    return cv2.dnn.blobFromImageWithParams(image, params)


def argmax_channels(probs: np.ndarray) -> np.ndarray:
    """uint8 argmax over axis 0 of (C, H, W), one channel at a time (the first wins a tie, as in
    numpy's argmax, which is several times slower along the outer axis)."""
    best = probs[0].copy()
    labels = np.zeros(best.shape, np.uint8)
    for index in range(1, len(probs)):
        np.copyto(labels, np.uint8(index), where=probs[index] > best)
        np.maximum(best, probs[index], out=best)
    return labels


def softmax(logits: np.ndarray) -> np.ndarray:
    """Softmax over axis 0 of a (C, H, W) float32 view, one channel at a time: a reduction over
    the class axis of a strided view is ten times slower than C elementwise passes."""
    top = logits[0].copy()
    for channel in logits[1:]:
        np.maximum(top, channel, out=top)
    probs = np.subtract(logits, top, dtype=np.float32, order="C")
    exp_inplace(probs)
    total = probs[0].copy()
    for channel in probs[1:]:
        total += channel
    np.reciprocal(total, out=total)
    probs *= total
    return probs


def exp_inplace(x: np.ndarray) -> np.ndarray:
    """exp of a float32 array in place, by OpenCV when it is C-contiguous (vectorised: 5x numpy's exp here)."""
    if not x.flags.c_contiguous:
        return np.exp(x, out=x)
    flat = x.reshape(-1, x.shape[-1]) if x.ndim > 1 else x.reshape(1, -1)
    cv2.exp(flat, dst=flat)
    return x


def sigmoid(x: np.ndarray) -> np.ndarray:
    """float32 logistic of `x`, computed in one buffer."""
    out = np.negative(x, dtype=np.float32, order="C")
    exp_inplace(out)
    out += 1.0
    return np.reciprocal(out, out=out)
