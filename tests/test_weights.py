"""The weights registry: lookup, checksums, safetensors only, offline behaviour."""

from __future__ import annotations

import dataclasses
import pickle

import pytest
import torch

import weights
from core.errors import WeightsError


def test_unknown_name_lists_the_valid_ones():
    with pytest.raises(WeightsError) as info:
        weights.get_spec("no-such-model")
    for name in weights.specs():
        assert name in str(info.value)


def test_registry_has_one_default_with_the_label_classes():
    from core.labels import LABELS

    spec = weights.default_spec()
    assert spec.classes == tuple(label.name for label in LABELS)
    assert sum(s.default for s in weights.specs().values() if s.task == spec.task) == 1


def test_checkpoint_round_trip_carries_its_spec(tiny_weights):
    spec = weights.spec_from_file(tiny_weights)
    assert spec.arch == "Unet" and spec.encoder == "tu-mobilenetv3_small_050"
    assert spec.arch_kwargs == {"encoder_depth": 4, "decoder_channels": [32, 16, 8, 8]}
    tensors, metadata = weights.load_state_dict(tiny_weights)
    assert all(isinstance(t, torch.Tensor) for t in tensors.values()) and "name" in metadata


def test_calibrated_thresholds_travel_with_the_checkpoint(tiny_weights, tmp_path):
    spec = dataclasses.replace(weights.spec_from_file(tiny_weights), thresholds={"acne": 0.2})
    tensors, _ = weights.load_state_dict(tiny_weights)
    weights.save_checkpoint(tensors, tmp_path / "calibrated.safetensors", spec)
    assert weights.lookup(tmp_path / "calibrated.safetensors").thresholds == {"acne": 0.2}
    assert weights.spec_from_file(tiny_weights).thresholds is None


def test_checksum_mismatch_is_refused(tiny_weights):
    spec = dataclasses.replace(weights.spec_from_file(tiny_weights), sha256="0" * 64)
    with pytest.raises(WeightsError, match="checksum mismatch"):
        weights.resolve(spec)
    good = dataclasses.replace(spec, sha256=weights.sha256_file(tiny_weights))
    assert weights.resolve(good) == tiny_weights


def test_pickle_payload_is_refused_unread(tmp_path):
    class Boom:
        def __reduce__(self):
            return (exec, ("raise SystemExit('pickle code ran')",))

    path = tmp_path / "evil.safetensors"
    path.write_bytes(pickle.dumps({"weight": Boom()}))
    with pytest.raises(WeightsError, match="pickle checkpoints are refused"):
        weights.load_state_dict(path)
    torch_file = tmp_path / "model.pt"
    torch.save({"w": torch.zeros(2)}, torch_file)
    with pytest.raises(WeightsError, match="safetensors"):
        weights.spec_from_file(torch_file)


def test_hub_model_offline_says_what_to_do(isolated_cache, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    spec = dataclasses.replace(weights.get_spec("glowai-unet-r34"), revision="a" * 40, sha256="b" * 64)
    with pytest.raises(WeightsError, match="network is off"):
        weights.resolve(spec)
    unpublished = dataclasses.replace(spec, revision=None)
    with pytest.raises(WeightsError, match="not published"):
        weights.resolve(unpublished)


def test_local_cache_is_found_without_the_network(isolated_cache, tiny_weights):
    spec = dataclasses.replace(weights.get_spec("glowai-unet-r34"), revision="a" * 40,
                               sha256=weights.sha256_file(tiny_weights))
    target = isolated_cache / "weights" / spec.name / spec.filename
    target.parent.mkdir(parents=True)
    target.write_bytes(tiny_weights.read_bytes())
    assert weights.resolve(spec, allow_network=False) == target


def test_lookup_takes_names_paths_and_none(tiny_weights):
    assert weights.lookup(None) == weights.default_spec()
    assert weights.lookup("glowai-unet-r34").encoder == "resnet34"
    assert weights.lookup(str(tiny_weights)).name == "tiny-test-unet"


def test_same_tensors_and_metadata_give_the_same_bytes(tmp_path):
    """A retrained model that comes out the same must hash the same: the header is canonical, whatever
    order the tensors and metadata were given in (safetensors' own writer varies the metadata order)."""
    from safetensors import safe_open

    generator = torch.Generator().manual_seed(0)
    tensors = {f"block{i}.{kind}": torch.randn(8, 3 + i, generator=generator) for i in range(5) for kind in ("w", "b")}
    tensors["steps"] = torch.tensor([7])
    meta = {f"key{i}": f"value {i}" for i in range(12)}
    one = weights.safetensors_bytes(tensors, meta)
    other = weights.safetensors_bytes(dict(reversed(tensors.items())), dict(reversed(meta.items())))
    assert one == other
    assert int.from_bytes(one[:8], "little") % 8 == 0  # the data section stays 8-byte aligned
    path = tmp_path / "w.safetensors"
    path.write_bytes(one)
    with safe_open(str(path), "pt") as handle:
        assert handle.metadata() == meta
        assert all(torch.equal(handle.get_tensor(k), v) for k, v in tensors.items())
    changed = weights.safetensors_bytes({**tensors, "steps": torch.tensor([8])}, meta)
    assert changed != one
