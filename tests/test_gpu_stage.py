"""scripts/gpu_stage.py: a checkpoint cut into pieces small enough to come back from the device
machine, and joined again exactly; missing or mixed pieces are refused."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from safetensors import safe_open
from safetensors.numpy import save_file

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

from gpu_stage import join, split  # noqa: E402


def _checkpoint(path: Path, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    tensors = {f"layer{i}.weight": rng.standard_normal((64, 32 * (i + 1))).astype(np.float32) for i in range(6)}
    tensors["step"] = np.array([seed], np.int64)
    save_file(tensors, str(path), metadata={"name": "tiny", "seed": str(seed)})
    return tensors


def test_split_then_join_gives_the_same_checkpoint(tmp_path):
    tensors = _checkpoint(tmp_path / "best.safetensors", 1)
    piece_mib = 0.12  # a few tensors per piece
    pieces = split(tmp_path / "best.safetensors", tmp_path / "out", piece_mib)
    assert len(pieces) >= 3
    assert all(p.stat().st_size <= piece_mib * 2**20 for p in pieces)
    joined = join(tmp_path / "out", tmp_path / "run" / "best.safetensors")
    with safe_open(str(joined), "np") as handle:
        assert handle.metadata() == {"name": "tiny", "seed": "1"}
        assert set(handle.keys()) == set(tensors)
        for key, value in tensors.items():
            assert np.array_equal(handle.get_tensor(key), value)


def test_missing_or_mixed_pieces_are_refused(tmp_path):
    (tmp_path / "a").mkdir()
    _checkpoint(tmp_path / "a" / "best.safetensors", 1)
    pieces = split(tmp_path / "a" / "best.safetensors", tmp_path / "out", 0.12)
    pieces[1].unlink()
    with pytest.raises(ValueError, match="pieces"):
        join(tmp_path / "out", tmp_path / "joined.safetensors")
    (tmp_path / "b").mkdir()
    _checkpoint(tmp_path / "b" / "best.safetensors", 2)
    other = split(tmp_path / "b" / "best.safetensors", tmp_path / "other", 0.12)
    other[1].rename(pieces[1])  # the gap filled from another run's checkpoint
    with pytest.raises(ValueError, match="another checkpoint"):
        join(tmp_path / "out", tmp_path / "joined.safetensors")
    assert not (tmp_path / "joined.safetensors").exists()
    with pytest.raises(ValueError, match="over a piece"):
        split(tmp_path / "b" / "best.safetensors", tmp_path / "small", 0.01)
