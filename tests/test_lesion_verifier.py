"""The lesion verifier: its ONNX graph is the torch network, patches are cut where the points are,
and broken checkpoints are refused."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from core.errors import WeightsError
from core.lesion_verifier import (
    PATCH,
    LesionVerifier,
    build_verifier,
    combined_score,
    cut_patches,
    normalise,
    verifier_metadata,
)


def save_verifier(path, width: int = 4, seed: int = 0, bias: float | None = None, channels: int = 4):
    """A tiny real verifier with random weights and BatchNorm statistics (or, with `bias`, one whose
    output is sigmoid(bias) for every patch). Returns the torch network (eval mode)."""
    from safetensors.torch import save_file

    torch.manual_seed(seed)
    net = build_verifier(width, channels)
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.2, 0.2)
        net[-1].weight.mul_(30)  # a spread of answers, not all near one half
        if bias is not None:
            net[-1].weight.zero_()
            net[-1].bias.fill_(bias)
    net.eval()
    tensors = {k: v.contiguous() for k, v in net.state_dict().items() if not k.endswith("num_batches_tracked")}
    save_file(tensors, str(path), metadata=verifier_metadata(width, channels=channels))
    return net


@pytest.mark.parametrize("channels", [4, 3])
def test_the_onnx_graph_computes_what_the_torch_network_does(tmp_path, channels):
    net = save_verifier(tmp_path / "v.safetensors", channels=channels)
    rng = np.random.default_rng(1)
    patches = normalise(rng.random((7, 4, PATCH, PATCH)).astype(np.float32))
    patches[:, 3] += np.linspace(0, 3, 7, dtype=np.float32)[:, None, None]  # from no heat to a lot
    patches[:, 0] += np.linspace(-2, 2, 7, dtype=np.float32)[:, None, None]
    with torch.no_grad():  # an RGB-only verifier reads the first three channels of the same patches
        expected = torch.sigmoid(net(torch.from_numpy(patches[:, :channels].copy()))[:, 0]).numpy()
    got = LesionVerifier(tmp_path / "v.safetensors").probabilities(patches)
    assert got.shape == (7,) and np.abs(got - expected).max() < 1e-5
    assert expected.std() > 1e-3  # the patches get different answers: the comparison means something
    assert LesionVerifier(tmp_path / "v.safetensors").probabilities(np.zeros((0, 4, PATCH, PATCH))).shape == (0,)


def test_patches_are_cut_around_the_points_and_a_crops_heatmap_is_read_in_place():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (200, 300, 3), np.uint8)
    heat = rng.random((200, 300)).astype(np.float32)
    full = np.zeros_like(heat)
    full[50:150, 70:260] = heat[50:150, 70:260]
    points = np.array([[75, 55], [100, 100], [255, 149], [5, 5], [299, 199], [150, 40]], np.float32)
    whole = cut_patches(image, full, points)
    assert np.array_equal(whole, cut_patches(image, heat[50:150, 70:260], points, heat_origin=(70, 50)))
    half = PATCH // 2
    assert np.allclose(whole[1, :3, half, half], image[100, 100] / 255)  # the point sits at the centre
    assert whole[1, 3, half, half] == full[100, 100]
    assert np.allclose(whole[3, :3, half - 2, half - 2], image[3, 3] / 255)  # reflected at the border
    wide = cut_patches(image, full, points, margin=4)
    assert wide.shape == (6, 4, PATCH + 8, PATCH + 8) and np.array_equal(wide[:, :, 4:-4, 4:-4], whole)
    x = normalise(whole)
    assert np.allclose(x[:, :3].mean(axis=(2, 3)), 0, atol=1e-4) and np.array_equal(x[:, 3], whole[:, 3])


def test_the_score_is_the_geometric_mean_of_heat_and_probability():
    assert np.allclose(combined_score(np.array([0.25, 1.0, 0.5]), np.array([1.0, 0.16, 0.0])), [0.5, 0.4, 0.0])


def test_broken_or_replaced_checkpoints_are_refused(tmp_path):
    from safetensors.torch import save_file

    save_verifier(tmp_path / "v.safetensors")
    with pytest.raises(WeightsError, match="checksum"):
        LesionVerifier(tmp_path / "v.safetensors", sha256="0" * 64)
    save_file({"x": torch.zeros(2)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(WeightsError, match="not a verifier"):
        LesionVerifier(tmp_path / "other.safetensors")
    (tmp_path / "pickle.safetensors").write_bytes(b"\x80\x04garbage")
    with pytest.raises(WeightsError, match="not a readable"):
        LesionVerifier(tmp_path / "pickle.safetensors")
    with pytest.raises(WeightsError, match="not found"):
        LesionVerifier(tmp_path / "missing.safetensors")


def test_patches_at_the_border_are_the_reflected_photo():
    rng = np.random.default_rng(3)
    image = rng.integers(0, 255, (50, 70, 3), np.uint8)
    points = np.array([[0, 0], [69, 49], [3, 40], [35, 25], [68, 1]], np.float32)
    half = PATCH // 2
    padded = np.pad(image, ((half, half), (half, half), (0, 0)), mode="reflect")
    patches = cut_patches(image, np.zeros((50, 70), np.float32), points)
    for (x, y), patch in zip(points.astype(int), patches, strict=True):
        assert np.allclose(patch[:3], padded[y:y + PATCH, x:x + PATCH].transpose(2, 0, 1) / 255)
