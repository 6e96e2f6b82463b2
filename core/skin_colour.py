"""The per-face skin-colour model of `core.regions`: a robust a*b* Gaussian of the face's own skin
(with a lightness floor for shadows, stricter beyond the mesh oval) and a contrast model, Lab
histograms of that skin against the hair and background around the face."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from scipy import ndimage

from core.maskops import ring

if TYPE_CHECKING:
    from core.regions import RegionOptions


def colour_ok(lab: np.ndarray, core: np.ndarray, oval: np.ndarray, beyond: np.ndarray, forehead: np.ndarray,
               unit: float, options: RegionOptions) -> np.ndarray:
    """Pixels whose colour passes this face's skin model.

    1. A robust a*b* Gaussian of the core skin, with a lightness floor for shadows (stricter
       beyond the mesh oval). 2. A contrast model: Lab histograms of the core skin against a ring
       of hair and background around the face, with a spatial prior (lower on the forehead,
       where fringes hang, and beyond the oval).
    """
    mean, inv_cov, l_median = fit_skin_colour(samples_of(lab, core))
    d2 = mahalanobis2(lab, mean, inv_cov)
    ok = (d2 < options.colour_threshold**2) & (lab[..., 0] > options.shadow_floor * l_median)
    ok &= ~(beyond & (d2 >= options.extension_threshold**2))
    if options.contrast_model:
        around = ring(oval, 0.1 * unit, 0.35 * unit)  # hair and background just beyond the face
        if around.sum() > 200:
            prior = np.where(beyond, np.float32(options.prior_outside), np.float32(options.prior_inside))
            prior[forehead] = options.prior_forehead
            ok &= skin_likelier(lab, core, around, prior)
    return ok


def mahalanobis2(lab: np.ndarray, mean: np.ndarray, inv_cov: np.ndarray) -> np.ndarray:
    """Squared Mahalanobis distance in a*b* of every pixel of `lab` (float32 ..., 3), in float32."""
    da = lab[..., 1] - np.float32(mean[0])
    db = lab[..., 2] - np.float32(mean[1])
    d2 = da * da
    d2 *= np.float32(inv_cov[0, 0])
    d2 += np.float32(inv_cov[0, 1] + inv_cov[1, 0]) * (da * db)
    db *= db
    db *= np.float32(inv_cov[1, 1])
    d2 += db
    return d2


def samples_of(values: np.ndarray, mask: np.ndarray, limit: int = 0) -> np.ndarray:
    """values[mask] (N, C), strided down to about `limit` rows (FIT_SAMPLES by default) before the
    gather: the same rows `fit_skin_colour` would keep, without copying every masked pixel first."""
    index = np.flatnonzero(mask)
    step = -(-len(index) // (limit or FIT_SAMPLES))
    return values.reshape(-1, values.shape[-1])[index[::step] if step > 1 else index]


FIT_SAMPLES = 40_000  # more skin pixels than this are strided down for the fit: the moments do not move


def fit_skin_colour(samples: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Robust Gaussian of a*b* (two trimming passes) and the median L* of skin samples (N, 3)."""
    if len(samples) > FIT_SAMPLES:
        samples = samples[:: -(-len(samples) // FIT_SAMPLES)]
    a, b = samples[:, 1].astype(np.float64), samples[:, 2].astype(np.float64)
    keep = np.ones(len(a))  # 1 for a sample in the fit, 0 for a trimmed one
    for _ in range(2):
        mean, cov = _moments(a, b, keep)
        inv = np.linalg.inv(cov + np.eye(2) * 1.0)
        da, db = a - mean[0], b - mean[1]
        d2 = inv[0, 0] * da * da + (inv[0, 1] + inv[1, 0]) * da * db + inv[1, 1] * db * db
        keep = (d2 <= np.quantile(d2, 0.9)).astype(np.float64)  # <=: a flat patch keeps every sample
    mean, cov = _moments(a, b, keep)
    cov = cov * 1.5 + np.eye(2) * 2.0  # widen: the trimmed fit underestimates spread
    return mean, np.linalg.inv(cov), float(np.median(samples[:, 0]))


def _moments(a: np.ndarray, b: np.ndarray, weight: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean (2,) and sample covariance (2, 2) of the (a, b) pairs whose weight is 1: np.cov's
    figures, as dot products over contiguous columns (a tenth of the time of masking the pairs).

    The products are np.einsum, not `@`: a float64 `@` over tens of thousands of pixels goes to
    OpenBLAS, whose worker thread then spins for ~0.1 s after the call and took one of the two
    cores from the next step (the model ran 1.5x slower right after regions; bench/bench_analyze.py).
    """
    def dot(x: np.ndarray, y: np.ndarray) -> float:
        return float(np.einsum("i,i->", x, y))

    n = weight.sum()
    mean = np.array([dot(a, weight), dot(b, weight)]) / n
    da, db = a - mean[0], b - mean[1]
    weighted = da * weight
    ab = dot(weighted, db)
    cov = np.array([[dot(weighted, da), ab], [ab, dot(db * weight, db)]]) / max(n - 1.0, 1.0)
    return mean, cov


_BINS = (20, 24, 24)
_LO = (0.0, -30.0, -20.0)
_HI = (100.0, 60.0, 70.0)


def _lab_bin_index(lab: np.ndarray) -> np.ndarray:
    """Flat index (int32) of each pixel's Lab histogram bin, _BINS per channel over [_LO, _HI]."""
    flat = None
    for channel, (bins, lo, hi) in enumerate(zip(_BINS, _LO, _HI, strict=True)):
        scaled = (lab[..., channel] - np.float32(lo)) * np.float32(bins / (hi - lo))
        index = np.clip(scaled, 0, bins - 1, out=scaled).astype(np.int32)  # the float is >= 0: truncation is floor
        flat = index if flat is None else flat * bins + index
    return flat


def skin_likelier(lab: np.ndarray, skin: np.ndarray, other: np.ndarray, prior: np.ndarray) -> np.ndarray:
    """Where skin is the likelier explanation (posterior > 0.5), from smoothed Lab histograms of
    this photo's skin and non-skin samples and a per-pixel prior: p_skin / p_other > (1 - prior) / prior."""
    flat = _lab_bin_index(lab)
    hists = []
    for mask in (skin, other):
        hist = np.bincount(flat[mask], minlength=int(np.prod(_BINS))).reshape(_BINS).astype(np.float64)
        hist = ndimage.gaussian_filter(hist, sigma=1.0) + 1e-3
        hists.append(hist / hist.sum())
    ratio = (hists[0] / hists[1]).astype(np.float32).ravel()  # per bin, not per pixel
    return ratio[flat] > (1 - prior) / prior
