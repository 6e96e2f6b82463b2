"""Diffusion inpainting generator, offline: a tiny random but real diffusers SD inpainting pipeline.

The pipeline follows diffusers' `get_dummy_components` (UNet/VAE at block_out_channels=(32, 64)),
with a CLIP tokenizer built from an in-code byte-level vocab (an offline `from_pretrained` of a hub
id silently gives a 2-token tokenizer) and tiny IP-Adapter weights written here to fit the UNet.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionInpaintPipeline, UNet2DConditionModel
from safetensors.torch import save_file
from transformers import (
    CLIPImageProcessor,
    CLIPTextConfig,
    CLIPTextModel,
    CLIPTokenizer,
    CLIPVisionConfig,
    CLIPVisionModelWithProjection,
)

import weights
from core.errors import WeightsError
from synth.diffusion import NEGATIVE_PROMPT, PROMPTS, DiffusionGenerator, DiffusionOptions, locate_repo

FAST = DiffusionOptions(work_size=64, steps=2, dilation=2, feather=2)
CROSS_ATTENTION_DIM = 32
CLIP_EMBED_DIM = 32


def _byte_level_vocab() -> dict[str, int]:
    """CLIP's byte-to-unicode alphabet, each symbol alone and as a word end: every text tokenizes."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    others = [b for b in range(256) if b not in printable]
    symbols = [chr(b) for b in printable] + [chr(256 + n) for n in range(len(others))]
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for suffix in ("", "</w>"):
        for symbol in symbols:
            vocab[symbol + suffix] = len(vocab)
    return vocab


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory) -> CLIPTokenizer:
    folder = tmp_path_factory.mktemp("tokenizer")
    (folder / "vocab.json").write_text(json.dumps(_byte_level_vocab()), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
    tokenizer = CLIPTokenizer(vocab=str(folder / "vocab.json"), merges=str(folder / "merges.txt"), model_max_length=77)
    assert len(tokenizer("red acne").input_ids) > 4  # not the silent 2-token fallback
    return tokenizer


def _ip_adapter_weights(unet: UNet2DConditionModel, path) -> None:
    """IP-Adapter tensors in the original layout that `load_ip_adapter` converts: image projection +
    to_k_ip/to_v_ip for each cross-attention processor, numbered 1, 3, 5, ... in attn_processors order."""
    generator = torch.Generator().manual_seed(1)

    def rand(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=generator) * 0.2

    tensors = {"image_proj.proj.weight": rand(4 * CROSS_ATTENTION_DIM, CLIP_EMBED_DIM),
               "image_proj.proj.bias": rand(4 * CROSS_ATTENTION_DIM),
               "image_proj.norm.weight": torch.ones(CROSS_ATTENTION_DIM),
               "image_proj.norm.bias": torch.zeros(CROSS_ATTENTION_DIM)}
    channels = unet.config.block_out_channels
    key = 1
    for name in unet.attn_processors:
        if name.endswith("attn1.processor"):  # self-attention: no IP-Adapter weights
            continue
        if name.startswith("mid_block"):
            hidden = channels[-1]
        elif name.startswith("up_blocks"):
            hidden = channels[::-1][int(name[len("up_blocks.")])]
        else:
            hidden = channels[int(name[len("down_blocks.")])]
        tensors[f"ip_adapter.{key}.to_k_ip.weight"] = rand(hidden, CROSS_ATTENTION_DIM)
        tensors[f"ip_adapter.{key}.to_v_ip.weight"] = rand(hidden, CROSS_ATTENTION_DIM)
        key += 2
    save_file(tensors, str(path))


@pytest.fixture(scope="module")
def make_pipeline(tokenizer, tmp_path_factory):
    """Builds a fresh seeded tiny pipeline, optionally with an IP-Adapter (tiny image encoder + weights)."""

    def build(ip_adapter: bool = False) -> StableDiffusionInpaintPipeline:
        torch.manual_seed(0)
        unet = UNet2DConditionModel(block_out_channels=(32, 64), layers_per_block=2, sample_size=32, in_channels=9,
                                    out_channels=4, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                                    up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
                                    cross_attention_dim=CROSS_ATTENTION_DIM)
        torch.manual_seed(0)
        vae = AutoencoderKL(block_out_channels=(32, 64), in_channels=3, out_channels=3, latent_channels=4,
                            down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2)
        torch.manual_seed(0)
        text_encoder = CLIPTextModel(CLIPTextConfig(
            bos_token_id=0, eos_token_id=1, pad_token_id=1, hidden_size=CROSS_ATTENTION_DIM, intermediate_size=37,
            layer_norm_eps=1e-5, num_attention_heads=4, num_hidden_layers=2, vocab_size=len(tokenizer),
            max_position_embeddings=77))
        torch.manual_seed(0)
        image_encoder = CLIPVisionModelWithProjection(CLIPVisionConfig(
            hidden_size=32, projection_dim=CLIP_EMBED_DIM, num_hidden_layers=2, num_attention_heads=4,
            intermediate_size=37, image_size=32, patch_size=4)) if ip_adapter else None
        scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                  clip_sample=False, set_alpha_to_one=False, steps_offset=1)
        pipeline = StableDiffusionInpaintPipeline(
            vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=scheduler,
            safety_checker=None, feature_extractor=CLIPImageProcessor(size=32, crop_size=32),
            image_encoder=image_encoder, requires_safety_checker=False)
        if ip_adapter:
            folder = tmp_path_factory.mktemp("ip-adapter")
            _ip_adapter_weights(unet, folder / "ip.safetensors")
            pipeline.load_ip_adapter(str(folder), subfolder="", weight_name="ip.safetensors", image_encoder_folder=None)
        pipeline.set_progress_bar_config(disable=True)
        return pipeline

    return build


@pytest.fixture(scope="module")
def clean(portrait) -> np.ndarray:
    scale = 160 / max(portrait.shape[:2])
    return cv2.resize(portrait, (round(portrait.shape[1] * scale), round(portrait.shape[0] * scale)),
                      interpolation=cv2.INTER_AREA)


@pytest.fixture(scope="module")
def target(clean) -> np.ndarray:
    """Acne (1) and texture (3) in two separate blobs."""
    height, width = clean.shape[:2]
    target = np.zeros((height, width), np.uint8)
    cv2.circle(target, (width // 3, height // 2), 9, 1, -1)
    cv2.ellipse(target, (2 * width // 3, height // 2 + 20), (14, 8), 30, 0, 360, 3, -1)
    return target


@pytest.fixture()
def calls(monkeypatch) -> list[dict]:
    """Records the keyword arguments of every StableDiffusionInpaintPipeline call."""
    recorded: list[dict] = []
    original = StableDiffusionInpaintPipeline.__call__

    def spy(self, *args, **kwargs):
        recorded.append(kwargs)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(StableDiffusionInpaintPipeline, "__call__", spy)
    return recorded


def _assert_pixel_exact(image, mask, clean, target, threshold) -> None:
    assert image.shape == clean.shape and image.dtype == np.uint8
    assert mask.shape == target.shape and mask.dtype == np.uint8
    assert np.array_equal(image[mask == 0], clean[mask == 0])
    assert np.array_equal(mask[mask > 0], target[mask > 0])  # valid classes, inside the target, the right class
    diff = np.abs(image.astype(np.int16) - clean.astype(np.int16)).max(axis=2)
    assert (diff[mask > 0] > threshold).all()


def test_pixels_outside_the_mask_are_the_clean_pixels(make_pipeline, clean, target, calls):
    generator = DiffusionGenerator(FAST, pipeline=make_pipeline())
    image, mask = generator.generate(clean, target, None, seed=7)
    _assert_pixel_exact(image, mask, clean, target, FAST.change_threshold)
    assert set(np.unique(mask).tolist()) == {0, 1, 3}
    assert (mask == 1).sum() > 0.5 * (target == 1).sum() and (mask == 3).sum() > 0.5 * (target == 3).sum()
    assert np.array_equal(image[target == 0], clean[target == 0])
    assert [c["prompt"] for c in calls] == [PROMPTS["acne"], PROMPTS["texture"]]  # in label order
    assert all(c["negative_prompt"] == NEGATIVE_PROMPT for c in calls)


def test_unchanged_target_pixels_are_reverted_and_left_out_of_the_mask(make_pipeline, clean, target):
    options = dataclasses.replace(FAST, change_threshold=254)
    image, mask = DiffusionGenerator(options, pipeline=make_pipeline()).generate(clean, target, None, seed=7)
    _assert_pixel_exact(image, mask, clean, target, 254)
    assert (mask > 0).sum() < 0.05 * (target > 0).sum()


def test_same_seed_same_output_other_seed_other_output(make_pipeline, clean, target):
    generator = DiffusionGenerator(FAST, pipeline=make_pipeline())
    first, first_mask = generator.generate(clean, target, None, seed=3)
    again, again_mask = generator.generate(clean, target, None, seed=3)
    other, _ = generator.generate(clean, target, None, seed=4)
    assert np.array_equal(first, again) and np.array_equal(first_mask, again_mask)
    assert not np.array_equal(first, other)


def test_small_masks_are_upscaled_to_the_work_size(make_pipeline, clean, calls):
    target = np.zeros(clean.shape[:2], np.uint8)
    target[40:50, 40:50] = 2  # 10 x 10 px
    target[100:140, 60:70] = 4  # 40 x 10 px: a non-square crop
    image, mask = DiffusionGenerator(FAST, pipeline=make_pipeline()).generate(clean, target, None, seed=0)
    _assert_pixel_exact(image, mask, clean, target, FAST.change_threshold)
    assert len(calls) == 2
    for call in calls:
        assert max(call["height"], call["width"]) == FAST.work_size
        assert call["height"] % 8 == 0 and call["width"] % 8 == 0
        assert call["image"].size == (call["width"], call["height"]) == call["mask_image"].size
    assert (calls[0]["height"], calls[0]["width"]) == (64, 64)
    assert calls[1]["height"] == 64 and 16 <= calls[1]["width"] < 64
    assert mask[40:50, 40:50].any() and mask[100:140, 60:70].any()


def test_reference_image_steers_through_the_ip_adapter(make_pipeline, clean, target, calls):
    generator = DiffusionGenerator(FAST, pipeline=make_pipeline(ip_adapter=True))
    reference = cv2.resize(clean[40:120, 30:130], (64, 64))
    image, mask = generator.generate(clean, target, reference, seed=5)
    _assert_pixel_exact(image, mask, clean, target, FAST.change_threshold)
    assert mask.any()
    assert all(np.array_equal(np.asarray(c["ip_adapter_image"]), reference) for c in calls)
    other, _ = generator.generate(clean, target, 255 - reference, seed=5)
    assert not np.array_equal(image, other)  # the reference changes the result
    plain, plain_mask = generator.generate(clean, target, None, seed=5)  # adapter loaded, no reference: scale 0
    without, _ = DiffusionGenerator(FAST, pipeline=make_pipeline()).generate(clean, target, None, seed=5)
    _assert_pixel_exact(plain, plain_mask, clean, target, FAST.change_threshold)
    assert np.array_equal(plain, without)


def test_reference_without_ip_adapter_is_refused(make_pipeline, clean, target):
    generator = DiffusionGenerator(FAST, pipeline=make_pipeline())
    with pytest.raises(ValueError, match="needs an IP-Adapter"):
        generator.generate(clean, target, clean, seed=0)


def test_empty_target_returns_the_clean_image_without_running_the_model(make_pipeline, clean, calls):
    image, mask = DiffusionGenerator(FAST, pipeline=make_pipeline()).generate(
        clean, np.zeros(clean.shape[:2], np.uint8), None, seed=0)
    assert np.array_equal(image, clean) and not mask.any() and not calls


@pytest.mark.parametrize(("change", "message"), [
    (lambda clean, target: (clean, target[:-1]), "target must be a uint8 class-index map of shape"),
    (lambda clean, target: (clean, np.where(target == 1, 7, target).astype(np.uint8)), r"unknown class values \[7\]"),
    (lambda clean, target: (clean.astype(np.float32), target), "clean must be an RGB uint8 array"),
    (lambda clean, target: (clean, target.astype(np.int32)), "target must be a uint8"),
])
def test_bad_inputs_fail_with_the_fix(make_pipeline, clean, target, change, message):
    generator = DiffusionGenerator(FAST, pipeline=make_pipeline())
    with pytest.raises(ValueError, match=message):
        generator.generate(*change(clean, target), None, seed=0)


def test_bad_options_fail():
    with pytest.raises(ValueError, match="work_size must be a multiple of 8"):
        DiffusionOptions(work_size=100)


@pytest.fixture()
def empty_hf_cache(tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    return tmp_path / "hub"


def test_registry_model_without_network_says_what_to_do(empty_hf_cache):
    for allow_network in (False, True):  # unpinned: refused even when the network is allowed
        with pytest.raises(WeightsError, match=r"no pinned revision; run `hf download stable-diffusion-v1-5/"):
            DiffusionGenerator(DiffusionOptions(allow_network=allow_network))
    pinned = dataclasses.replace(weights.get_spec("sd15-inpainting"), revision="0" * 40)
    with pytest.raises(WeightsError, match="downloads are off.*HF_HUB_OFFLINE"):
        locate_repo(pinned, allow_network=True, required=("model_index.json",))  # HF_HUB_OFFLINE=1 (conftest)
    with pytest.raises(WeightsError, match="ip-adapter-sd15.*no pinned revision and sha256.*models/image_encoder"):
        locate_repo(weights.get_spec("ip-adapter-sd15"), allow_network=True,
                    required=("models/ip-adapter_sd15.safetensors", "models/image_encoder/config.json"))
    assert not empty_hf_cache.exists() or not any(empty_hf_cache.rglob("*.*"))  # nothing was downloaded


def test_wrong_registry_task_is_refused():
    with pytest.raises(WeightsError, match="not a diffusers inpainting repository"):
        DiffusionGenerator(DiffusionOptions(model="glowai-unet-small"))


def test_cached_repo_is_found_offline(empty_hf_cache):
    commit = "a" * 40
    repo = empty_hf_cache / "models--stable-diffusion-v1-5--stable-diffusion-inpainting"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    (repo / "snapshots" / commit).mkdir(parents=True)
    (repo / "snapshots" / commit / "model_index.json").write_text("{}")
    spec = weights.get_spec("sd15-inpainting")
    assert locate_repo(spec, allow_network=False, required=("model_index.json",)) == str(repo / "snapshots" / commit)
    with pytest.raises(WeightsError, match="not in the Hugging Face cache"):
        locate_repo(spec, allow_network=False, required=("model_index.json", "unet/config.json"))



def _fake_cached_repo(cache, repo_id: str) -> Path:
    """An empty snapshot folder for `repo_id` laid out as the Hugging Face cache does (refs/main -> commit)."""
    commit = "c" * 40
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    (repo / "snapshots" / commit).mkdir(parents=True)
    return repo / "snapshots" / commit



@pytest.fixture()
def cached_registry_repos(make_pipeline, empty_hf_cache) -> None:
    """Tiny weights saved where the registry's two hub repos would be in the Hugging Face cache."""
    tiny = make_pipeline(ip_adapter=True)
    make_pipeline().save_pretrained(_fake_cached_repo(empty_hf_cache, weights.get_spec("sd15-inpainting").repo))
    ip_spec = weights.get_spec("ip-adapter-sd15")
    ip_dir = _fake_cached_repo(empty_hf_cache, ip_spec.repo)
    tiny.image_encoder.save_pretrained(ip_dir / "models" / "image_encoder")
    _ip_adapter_weights(tiny.unet, ip_dir / ip_spec.filename)


def test_registry_pipeline_loads_from_the_local_cache(cached_registry_repos, clean, target, calls):
    """The real loading path (from_pretrained, then load_ip_adapter with its image encoder), offline."""
    with DiffusionGenerator(FAST) as generator:
        image, mask = generator.generate(clean, target, clean[:64, :64].copy(), seed=1)
    _assert_pixel_exact(image, mask, clean, target, FAST.change_threshold)
    assert mask.any() and len(calls) == 2 and "ip_adapter_image" in calls[0]


@pytest.mark.slow
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_fp16_registry_pipeline(cached_registry_repos, clean, target):
    with DiffusionGenerator(dataclasses.replace(FAST, device="cuda")) as generator:
        image, mask = generator.generate(clean, target, clean[:64, :64].copy(), seed=1)
        again, _ = generator.generate(clean, target, clean[:64, :64].copy(), seed=1)
    _assert_pixel_exact(image, mask, clean, target, FAST.change_threshold)
    assert mask.any() and np.array_equal(image, again)


def test_dataset_run_with_the_diffusion_backend(make_pipeline, tmp_path):
    """The dataset writer end to end with the tiny pipeline: exact masks on disk, manifest rows."""
    import pandas as pd
    from PIL import Image as PILImage

    from synth.dataset import RunConfig, run

    faces = Path(__file__).resolve().parents[1] / "data" / "examples"
    generator = DiffusionGenerator(DiffusionOptions(steps=2, work_size=64), pipeline=make_pipeline())
    config = RunConfig(backend="diffusion", faces=str(faces), seed=2, size=128, classes=("acne", "redness"))
    manifest = run(config, 4, tmp_path / "ds", progress=False, diffusion=generator)
    assert len(manifest) == 4 and set(manifest["generator"]) == {"diffusion"}
    for row in pd.read_parquet(tmp_path / "ds" / "manifest.parquet").itertuples():
        image = np.asarray(PILImage.open(tmp_path / "ds" / row.image))
        clean_image = np.asarray(PILImage.open(tmp_path / "ds" / row.clean))
        mask = np.asarray(PILImage.open(tmp_path / "ds" / row.mask))
        assert np.array_equal(image[mask == 0], clean_image[mask == 0])
        assert row.qc_outside_change == 0
