"""Synthetic dataset runs: plan, generate, check, write crash-safely, resume, shard and merge.

Folder layout: images/ (the face with blemishes), clean/ (the face before), masks/ (pixel = class
index), all lossless PNG with the same stem; records/ (one JSON per accepted sample, written last,
so a sample exists only once all its files do); manifest.parquet (rebuilt from records/);
run.json (the run's settings, checked on resume).
"""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from tqdm import tqdm

from core.errors import GlowAIError
from core.files import write_atomic
from core.labels import CONDITIONS
from synth.faces import TONE_BUCKETS, FacePreparer, SourceFace, face_paths, load_faces, read_credits
from synth.masks import SEVERITIES, layout_target, sample_layout
from synth.procedural import ProceduralOptions, render
from synth.qc import class_pixels, quality

FORMAT_VERSION = 1
MAX_ATTEMPTS = 20
VAL_SHARE = 0.2


@dataclass(frozen=True)
class RunConfig:
    backend: str  # "procedural" or "diffusion"
    faces: str
    seed: int
    classes: tuple[str, ...] = tuple(label.name for label in CONDITIONS)
    severities: tuple[int, ...] = (1, 2, 3)
    size: int = 512
    secondary_rate: float = 0.35  # share of samples that also get a second, mild condition


@dataclass(frozen=True)
class SampleSpec:
    index: int
    id: str
    identity: str
    primary: str
    severity: tuple[tuple[str, int], ...]  # (condition, level) pairs, primary first


@dataclass
class Plan:
    specs: list[SampleSpec]
    split: dict[str, str]  # identity -> "train" | "val"
    faces: dict[str, SourceFace] = field(repr=False)


def _check_config(config: RunConfig) -> None:
    valid = {label.name for label in CONDITIONS}
    if not config.classes or set(config.classes) - valid:
        raise GlowAIError(f"--classes {','.join(config.classes)}: choose from {', '.join(sorted(valid))}")
    if not config.severities or set(config.severities) - set(SEVERITIES):
        raise GlowAIError(f"--severity {config.severities}: levels are 0-3")
    if config.backend not in ("procedural", "diffusion"):
        raise GlowAIError(f"--backend {config.backend}: use procedural or diffusion")


def prepare_faces(folder: Path, size: int, progress: bool = True) -> dict[str, SourceFace]:
    """Every usable face in `folder` by identity (file stem); photos without a usable face are skipped.
    `folder` may instead be a .npz from `glowai synth faces` (faces prepared before, elsewhere)."""
    if folder.suffix == ".npz" and folder.is_file():
        return load_faces(folder, size)
    credits = read_credits(folder)
    preparer = FacePreparer(size)
    faces: dict[str, SourceFace] = {}
    try:
        for path in tqdm(face_paths(folder), desc="faces", unit="face", disable=not progress):
            try:
                face = preparer.prepare(path, credits.get(path.name, ""))
            except GlowAIError:
                face = None
            if face is not None:
                faces[face.identity] = face
    finally:
        preparer.close()
    if not faces:
        raise GlowAIError(f"{folder}: no usable colour face photo found")
    return faces


def make_plan(config: RunConfig, n: int, faces: dict[str, SourceFace]) -> Plan:
    """Which face, conditions and severities each of the n samples gets; deterministic in the seed.

    Balanced by cycling condition x severity x skin-tone bucket; within a bucket faces are used
    in a seeded shuffled round robin. Split 80/20 by identity, never by sample.
    """
    rng = np.random.default_rng([config.seed, 0])
    identities = sorted(faces)
    shuffled = list(rng.permutation(identities))
    n_val = max(1, round(VAL_SHARE * len(identities))) if len(identities) > 1 else 0
    split = {identity: ("val" if i < n_val else "train") for i, identity in enumerate(shuffled)}
    buckets = [t for t in TONE_BUCKETS if any(f.tone == t for f in faces.values())]
    pools = {t: list(rng.permutation([i for i in identities if faces[i].tone == t])) for t in buckets}
    used = dict.fromkeys(buckets, 0)
    combos = [(c, s) for s in config.severities for c in config.classes]
    specs = []
    for index in range(n):
        primary, level = combos[index % len(combos)]
        bucket = buckets[(index // len(combos)) % len(buckets)]
        identity = pools[bucket][used[bucket] % len(pools[bucket])]
        used[bucket] += 1
        severity = [(primary, level)]
        sample_rng = np.random.default_rng([config.seed, 1, index])
        others = [c for c in config.classes if c != primary]
        if others and sample_rng.random() < config.secondary_rate:
            severity.append((others[int(sample_rng.integers(len(others)))], 1))
        specs.append(SampleSpec(index, f"{config.seed:04d}-{index:06d}", identity, primary, tuple(severity)))
    return Plan(specs, split, faces)


# -- writing -----------------------------------------------------------------------------------
def _png(rgb_or_index: np.ndarray) -> bytes:
    array = rgb_or_index if rgb_or_index.ndim == 2 else cv2.cvtColor(rgb_or_index, cv2.COLOR_RGB2BGR)
    ok, buffer = cv2.imencode(".png", array, [cv2.IMWRITE_PNG_COMPRESSION, 3])
    if not ok:
        raise GlowAIError("PNG encoding failed")
    return buffer.tobytes()


_WORKER: dict = {}  # filled before the pool forks: plan, config, out, generator


def _generate(spec: SampleSpec) -> dict:
    """Make, check and write one sample; returns its record (also written to records/<id>.json)."""
    plan, config, out = _WORKER["plan"], _WORKER["config"], _WORKER["out"]
    face = plan.faces[spec.identity]
    severity = dict(spec.severity)
    for attempt in range(MAX_ATTEMPTS):
        rng = np.random.default_rng([config.seed, 2, spec.index, attempt])
        layout = sample_layout(face, severity, rng)
        if config.backend == "procedural":
            options = ProceduralOptions()
            result = render(face, layout, rng, options)
            image, mask = result.image, result.mask
            params = {"change_threshold": options.change_threshold, "strength": options.strength}
        else:
            generator = _WORKER["diffusion"]
            target = layout_target(layout, face.image.shape[:2])
            image, mask = generator.generate(face.image, target, None, seed=int(rng.integers(2**31)))
            params = dataclasses.asdict(generator.options)
        qc = quality(face.image, image, mask, face.regions.skin)
        if qc.accepted:
            break
    else:
        raise GlowAIError(f"sample {spec.id}: no attempt passed QC ({qc.reason})")
    names = {"images": image, "clean": face.image, "masks": mask}
    for folder, array in names.items():
        write_atomic(out / folder / f"{spec.id}.png", _png(array))
    pixels = class_pixels(mask)
    record = {
        "id": spec.id, "identity": spec.identity, "split": plan.split[spec.identity],
        "generator": config.backend, "params": json.dumps(params, sort_keys=True), "seed": config.seed,
        "index": spec.index, "attempt": attempt, "primary": spec.primary, "primary_severity": severity[spec.primary],
        "severity": json.dumps(severity, sort_keys=True),
        "classes": [name for name, count in pixels.items() if count > 0],
        **{f"px_{name}": count for name, count in pixels.items()},
        "ita": round(face.ita, 2), "tone": face.tone,
        **{f"qc_{k}": v for k, v in qc.as_dict().items()},
        "credit": face.credit, "image": f"images/{spec.id}.png", "mask": f"masks/{spec.id}.png",
        "clean": f"clean/{spec.id}.png",
    }
    write_atomic(out / "records" / f"{spec.id}.json", json.dumps(record, sort_keys=True).encode())
    return record


def _is_done(out: Path, sample_id: str) -> bool:
    if not (out / "records" / f"{sample_id}.json").is_file():
        return False
    return all((out / folder / f"{sample_id}.png").is_file() for folder in ("images", "clean", "masks"))


def run(config: RunConfig, n: int, out: Path, shard: tuple[int, int] = (0, 1), workers: int | None = None,
        progress: bool = True, diffusion=None) -> pd.DataFrame:
    """Generate the samples of `shard` (I, N: every sample whose index % N == I) into `out`.

    Resumable: finished samples are skipped, half-written files are replaced. Returns the manifest
    of everything in `out` (all shards written there so far). `diffusion`: a ready
    `synth.diffusion.DiffusionGenerator` for the diffusion backend (default: from the registry).
    """
    _check_config(config)
    if config.backend == "diffusion" and diffusion is None:
        from synth.diffusion import DiffusionGenerator

        diffusion = DiffusionGenerator()  # fails fast, before any work, when the weights cannot be had
    out = Path(out)
    for folder in ("images", "clean", "masks", "records"):
        (out / folder).mkdir(parents=True, exist_ok=True)
    _check_run_file(out, config)
    for stale in out.glob("*/.*.tmp"):
        stale.unlink()
    faces = prepare_faces(Path(config.faces), config.size, progress)
    plan = make_plan(config, n, faces)
    todo = [s for s in plan.specs if s.index % shard[1] == shard[0] and not _is_done(out, s.id)]
    _WORKER.update(plan=plan, config=config, out=out, diffusion=diffusion)
    if config.backend == "diffusion":
        workers = 1  # one pipeline on one device
    workers = workers or min(len(todo), os.cpu_count() or 1) or 1
    bar = tqdm(total=len(todo), desc=f"synth {config.backend}", unit="sample", disable=not progress)
    if workers > 1:
        with multiprocessing.get_context("fork").Pool(workers) as pool:
            for _ in pool.imap_unordered(_generate, todo, chunksize=2):
                bar.update()
    else:
        for spec in todo:
            _generate(spec)
            bar.update()
    bar.close()
    return write_manifest(out)


def _check_run_file(out: Path, config: RunConfig) -> None:
    settings = {"format": FORMAT_VERSION, **{k: list(v) if isinstance(v, tuple) else v
                                              for k, v in vars(config).items()}}
    settings["faces"] = str(Path(config.faces).resolve())
    path = out / "run.json"
    if path.is_file():
        previous = json.loads(path.read_text())
        different = {k for k in settings if previous.get(k) != settings[k] and k != "faces"}
        if different:
            raise GlowAIError(f"{out} holds a run with other settings ({', '.join(sorted(different))}); "
                              "use a new --out folder")
        return
    write_atomic(path, json.dumps(settings, indent=2).encode())


def write_manifest(out: Path) -> pd.DataFrame:
    """Rebuild manifest.parquet from records/ (atomically) and return it, sorted by id."""
    rows = [json.loads(p.read_text()) for p in sorted((out / "records").glob("*.json"))]
    manifest = pd.DataFrame(rows)
    if len(manifest):
        first = ["id", "identity", "split", "generator", "params", "seed", "index", "attempt", "primary",
                 "primary_severity", "severity", "classes"]
        last = ["credit", "image", "mask", "clean"]
        middle = sorted(c for c in manifest.columns if c not in first + last)
        manifest = manifest[first + middle + last].sort_values("id").reset_index(drop=True)
    tmp = out / ".manifest.parquet.tmp"
    manifest.to_parquet(tmp, index=False)
    os.replace(tmp, out / "manifest.parquet")
    return manifest


def merge(dest: Path, parts: list[Path]) -> pd.DataFrame:
    """Copy the samples of several shard folders into `dest` and write one manifest."""
    dest = Path(dest)
    for folder in ("images", "clean", "masks", "records"):
        (dest / folder).mkdir(parents=True, exist_ok=True)
    for part in parts:
        part = Path(part)
        if not (part / "records").is_dir():
            raise GlowAIError(f"{part}: not a synth output folder (no records/)")
        run_file = part / "run.json"
        if run_file.is_file() and (dest / "run.json").is_file():
            mine, theirs = json.loads((dest / "run.json").read_text()), json.loads(run_file.read_text())
            if {k: v for k, v in mine.items() if k != "faces"} != {k: v for k, v in theirs.items() if k != "faces"}:
                raise GlowAIError(f"{part} was made with other settings than {dest}; merge parts of one run only")
        elif run_file.is_file():
            shutil.copyfile(run_file, dest / "run.json")
        for record in sorted((part / "records").glob("*.json")):
            sample_id = record.stem
            if not _is_done(part, sample_id):
                continue
            for folder in ("images", "clean", "masks"):
                source, target = part / folder / f"{sample_id}.png", dest / folder / f"{sample_id}.png"
                if target.is_file() and target.read_bytes() != source.read_bytes():
                    raise GlowAIError(f"sample {sample_id} differs between parts; were they made with one seed?")
                write_atomic(target, source.read_bytes())
            write_atomic(dest / "records" / record.name, record.read_bytes())
    return write_manifest(dest)


def balance_table(manifest: pd.DataFrame) -> str:
    """Counts by primary condition x severity (rows) and skin-tone bucket (columns)."""
    if manifest.empty:
        return "(no samples)"
    table = pd.crosstab([manifest["primary"], manifest["primary_severity"]], manifest["tone"], margins=True)
    ordered = [t for t in TONE_BUCKETS if t in table.columns] + ["All"]
    return table[ordered].to_string()
