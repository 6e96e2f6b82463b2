"""The model registry: specs as data (weights/registry.json) and one way to resolve and load them.

Resolution order for a spec: the file embedded in weights/, then the local cache
($GLOWAI_CACHE or ~/.cache/glowai, and the Hugging Face cache), then `hf_hub_download` at the
pinned revision when the network is allowed. The sha256 is checked before anything is loaded,
and only safetensors files are read: pickle checkpoints are refused.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, fields
from functools import lru_cache
from pathlib import Path

from core.errors import WeightsError

WEIGHTS_DIR = Path(__file__).resolve().parent
REGISTRY_FILE = WEIGHTS_DIR / "registry.json"


@dataclass(frozen=True)
class WeightSpec:
    """Where a model's weights live and how its inputs are prepared.

    Exactly one source: `file` (relative to weights/ or absolute) or `repo` + `filename` +
    `revision` on the Hugging Face Hub. `mean`/`std` apply to RGB in [0, 1]; `input_size` is the
    long side, in pixels, of the face crop fed to the model.
    """

    name: str
    task: str
    license: str
    arch: str = ""  # segmentation specs: smp architecture, encoder and the rest below
    encoder: str = ""
    classes: tuple[str, ...] = ()
    input_size: int = 0
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    arch_kwargs: dict | None = None  # extra smp constructor arguments (encoder_depth, decoder_channels, ...)
    thresholds: dict | None = None  # class -> calibrated decision threshold (core.segmentation)
    # a lesion-centre heatmap as one more output channel after the classes: acne lesions are its
    # peaks at or above lesion_threshold (core.segmentation, the marked ones); the report counts every
    # peak at or above lesion_count_threshold (None: the same value), so faint spots count too
    lesion_head: bool = False
    lesion_threshold: float = 0.5
    lesion_count_threshold: float | None = None
    # or the count is the heatmap's mass: the heat above lesion_count_floor on skin, summed at the
    # network's input scale, divided by lesion_count_mass (the mass of one lesion), calibrated by
    # scripts/calibrate_acne.py; it ranks photos by how much acne they show better than peaks do
    lesion_count_floor: float | None = None
    lesion_count_mass: float | None = None
    # a second look at the heatmap's peaks (core.lesion_verifier): {"file" (relative to weights/),
    # "sha256", "floor" (candidates: peaks from this heat up), "count_scale"}; with it a candidate is
    # marked where the geometric mean of its heat and the verifier's probability p reaches
    # lesion_threshold, and every candidate adds count_scale * p**2 to the heatmap-mass count
    lesion_verifier: dict | None = None
    # the CPU runtime (core.segmentation.RUNTIMES) that "auto" picks for this model, e.g. "onnx-int8":
    # set only once its accuracy was checked against the reference path (the model card's figures)
    cpu_runtime: str | None = None
    file: str | None = None
    repo: str | None = None
    filename: str | None = None  # a file in `repo`; None for a whole diffusers repository
    revision: str | None = None
    sha256: str | None = None
    default: bool = False
    description: str = ""

    def to_metadata(self) -> dict[str, str]:
        """The spec as safetensors metadata (str -> str), so a checkpoint file describes itself."""
        return {k: json.dumps(v) for k, v in asdict(self).items()}

    @property
    def source(self) -> str:
        if self.file:
            return f"weights/{self.file}"
        path = f"{self.repo}/{self.filename}" if self.filename else f"{self.repo} (whole repo)"
        return f"hub:{path}@{self.revision or 'unpinned'}"


def _spec_from_dict(data: dict) -> WeightSpec:
    names = {f.name for f in fields(WeightSpec)}
    unknown = set(data) - names
    if unknown:
        raise WeightsError(f"registry entry {data.get('name')!r} has unknown keys {sorted(unknown)}")
    data = dict(data)
    for key in ("classes", "mean", "std"):
        if key in data:
            data[key] = tuple(data[key])
    return WeightSpec(**data)


@lru_cache(maxsize=1)
def specs() -> dict[str, WeightSpec]:
    """All registered specs by name."""
    with open(REGISTRY_FILE, encoding="utf-8") as handle:
        entries = json.load(handle)["models"]
    return {entry["name"]: _spec_from_dict(entry) for entry in entries}


def get_spec(name: str) -> WeightSpec:
    """The spec called `name`; an unknown name fails with the list of valid ones."""
    registry = specs()
    if name not in registry:
        raise WeightsError(f"unknown model {name!r}; valid names: {', '.join(sorted(registry))}")
    return registry[name]


def default_spec(task: str = "blemish-segmentation") -> WeightSpec:
    for spec in specs().values():
        if spec.task == task and spec.default:
            return spec
    raise WeightsError(f"no default model registered for task {task!r}")


def cache_dir() -> Path:
    return Path(os.environ.get("GLOWAI_CACHE", Path.home() / ".cache" / "glowai")) / "weights"


def network_allowed() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() not in ("1", "true", "yes")


def find_local(spec: WeightSpec) -> Path | None:
    """The weights file on this machine, or None. Never touches the network."""
    if spec.file:
        path = Path(spec.file) if Path(spec.file).is_absolute() else WEIGHTS_DIR / spec.file
        return path if path.is_file() else None
    if spec.repo and not spec.filename:  # a whole diffusers repository: look in the local HF cache only
        try:
            from huggingface_hub import snapshot_download

            folder = Path(snapshot_download(spec.repo, revision=spec.revision, local_files_only=True))
            return folder if (folder / "model_index.json").is_file() else None
        except Exception:  # noqa: BLE001 - any miss in the local HF cache means "not here"
            return None
    cached = cache_dir() / spec.name / (spec.filename or "model.safetensors")
    if cached.is_file():
        return cached
    if spec.repo and spec.filename and spec.revision:
        try:
            from huggingface_hub import hf_hub_download

            return Path(hf_hub_download(spec.repo, spec.filename, revision=spec.revision, local_files_only=True))
        except Exception:  # noqa: BLE001 - any miss in the local HF cache means "not here"
            return None
    return None


def resolve(spec: WeightSpec, allow_network: bool = True) -> Path:
    """Path of the verified weights file for `spec`, downloading only if allowed and needed."""
    path = find_local(spec)
    if path is None and spec.repo:
        if not (spec.filename and spec.revision and spec.sha256):
            raise WeightsError(f"model {spec.name!r} is not published yet (no pinned revision and sha256 in the registry)")
        if not (allow_network and network_allowed()):
            raise WeightsError(f"model {spec.name!r} is not on this machine and the network is off; "
                               f"run `glowai weights pull {spec.name}` where there is a network")
        from huggingface_hub import hf_hub_download

        try:
            path = Path(hf_hub_download(spec.repo, spec.filename, revision=spec.revision))
        except Exception as err:  # noqa: BLE001 - hub errors are many; all mean "could not fetch"
            raise WeightsError(f"could not download {spec.source}: {str(err).splitlines()[0][:120]}") from None
    if path is None:
        raise WeightsError(f"model {spec.name!r} is not installed: {spec.source} is missing")
    verify(path, spec.sha256)
    return path


def is_installed(spec: WeightSpec) -> bool:
    return find_local(spec) is not None


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify(path: Path, sha256: str | None) -> None:
    """Refuse a file whose checksum differs from the pinned one."""
    if sha256 and sha256_file(path) != sha256:
        raise WeightsError(f"{path.name}: checksum mismatch (expected sha256 {sha256[:12]}...); "
                           "the file is corrupt or was replaced: delete it and reinstall")


def _open_safetensors(path: Path, read_tensors: bool) -> tuple[dict, dict[str, str]]:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt" if read_tensors else "numpy", device="cpu") as handle:
            metadata = handle.metadata() or {}
            tensors = {key: handle.get_tensor(key) for key in handle.keys()} if read_tensors else {}
    except (SafetensorError, OSError, ValueError) as err:
        raise WeightsError(f"{path.name}: not a readable safetensors file ({' '.join(str(err).split())[:80]}); "
                           "pickle checkpoints are refused: convert to safetensors") from None
    return tensors, metadata


def load_state_dict(path: Path) -> tuple[dict, dict[str, str]]:
    """Tensors and metadata of a safetensors file. Anything else (a pickle) is refused unread."""
    return _open_safetensors(Path(path), read_tensors=True)


def spec_from_file(path: Path) -> WeightSpec:
    """A spec read from a checkpoint's own safetensors metadata (written by `save_checkpoint`)."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: no such weights file; pass a registry name or a .safetensors path")
    _, metadata = _open_safetensors(path, read_tensors=False)
    names = {f.name for f in fields(WeightSpec)}
    try:
        data = {k: json.loads(v) for k, v in metadata.items() if k in names}
        data.update(file=str(path.resolve()), repo=None, filename=None, revision=None, sha256=None, default=False)
        return _spec_from_dict(data)
    except (TypeError, KeyError, ValueError) as err:
        raise WeightsError(f"{path.name}: checkpoint metadata is missing or broken ({err}); "
                           "save checkpoints with weights.save_checkpoint") from None


def lookup(name_or_path: str | os.PathLike | None, task: str = "blemish-segmentation") -> WeightSpec:
    """A registry name, a .safetensors path, or None for the task's default."""
    if name_or_path is None:
        return default_spec(task)
    text = str(name_or_path)
    if text.endswith(".safetensors") or os.sep in text:
        return spec_from_file(Path(text))
    return get_spec(text)


def safetensors_bytes(tensors: dict, metadata: dict[str, str] | None = None) -> bytes:
    """torch tensors (+ string metadata) as a safetensors file whose header is canonical: compact
    JSON with sorted keys, so the same tensors and metadata always give the same bytes and sha256
    (safetensors' own writer orders the metadata as a hash map does, differently on each run). The
    data section is safetensors' own, untouched; the header stays padded to 8 bytes."""
    from safetensors.torch import save

    payload = save({k: v.contiguous() for k, v in tensors.items()}, metadata=metadata)
    size = int.from_bytes(payload[:8], "little")
    header = json.dumps(json.loads(payload[8:8 + size]), sort_keys=True, separators=(",", ":")).encode()
    header += b" " * (-(8 + len(header)) % 8)
    return len(header).to_bytes(8, "little") + header + payload[8 + size:]


def save_checkpoint(state_dict: dict, path: Path, spec: WeightSpec) -> None:
    """Write tensors + the spec as metadata, atomically (a killed write leaves no partial file);
    the same tensors and spec give the same bytes (`safetensors_bytes`)."""
    from core.files import write_atomic

    write_atomic(Path(path), safetensors_bytes(state_dict, spec.to_metadata()))
