"""Train GlowAI-Seg further on a lent GPU machine in one device call, and bring the weights back.

The device call carries the working tree and at most 64 MiB in all; the machine has PyTorch, timm,
OpenCV and pandas but neither segmentation_models_pytorch nor mediapipe, and reaches no network.
So the call takes (`pack`, into the ignored folder .gpu/): the CC0 source faces prepared here
(`glowai synth faces`: pixels as WebP, regions and landmarks exact) from which the machine makes
the same synthetic set as `glowai synth` here (seed 11, 2400 samples, same identities and split;
pixels within ~1 grey level), the annotated ACNE04 training photos as they are (JPEG), and the smp
wheel. The tracked weights fill most of the 64 MiB, so `detach` takes the Apache-2.0
glowai-unet-small out of the git index for the call (the file stays on disk) and `attach` puts it
back; never commit in between (`attach` is idempotent, `join` runs it too). On the machine,
scripts/gpu_stage.sh makes the set, trains from the shipped glowai-seg-v2 until its time is up and
cuts best.safetensors into pieces under 16 MiB (`split`), the most a call's file may be; `join`
makes them one checkpoint again here.

    .venv/bin/python scripts/gpu_stage.py pack       # ~1 minute; prints what the call will carry
    .venv/bin/python scripts/gpu_stage.py detach
    # device tool: run(command="bash scripts/gpu_stage.sh", carry=[".gpu"], timeout_s=600)
    .venv/bin/python scripts/gpu_stage.py join FILES_AT runs/gpu   # also attaches

Then ship and calibrate as the README's "How v2 was made" does with runs/gpu/best.safetensors.
Never pack acne04-dev: it calibrates and evaluates.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PACK = ROOT / ".gpu"
BUDGET_MIB = 64.0  # what one device call carries: tracked files + untracked unignored + carried paths
PIECE_MIB = 15.0  # a file coming back must stay under 16 MiB
DETACHED = "weights/glowai-unet-small.safetensors"  # the synthetic-only model, not needed for the call
PIECE_KEY = "glowai_piece"


def _git(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=check)


def tracked_bytes() -> int:
    """Bytes of the files the git index tracks (what a device call carries besides the pack)."""
    names = [n for n in _git("ls-files", "-z").stdout.split("\0") if n]
    return sum((ROOT / n).stat().st_size for n in names if (ROOT / n).is_file())


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def cmd_pack(args: argparse.Namespace) -> int:
    from core.errors import GlowAIError
    from core.model.data import acne04_circles
    from synth.dataset import prepare_faces
    from synth.faces import save_faces

    out, real = Path(args.out), Path(args.real)
    if "dev" in real.name:
        raise GlowAIError(f"{real}: the dev split calibrates and evaluates; pack the training split")
    out.mkdir(parents=True, exist_ok=True)
    faces = prepare_faces(Path(args.faces), 512, progress=True)
    save_faces(faces, out / "faces.npz", args.quality)
    # Only the annotated photos train the heatmap (and --real-val picks from them, by name).
    names = sorted(acne04_circles(real))
    images = out / "acne04-train" / "images"
    images.mkdir(parents=True, exist_ok=True)
    for stale in set(p.name for p in images.iterdir()) - set(names):
        (images / stale).unlink()
    jpegtran = shutil.which("jpegtran")  # lossless Huffman optimisation: ~4 % smaller, the same pixels
    for name in tqdm(names, desc="ACNE04 photos", unit="photo"):
        source, target = real / "images" / name, images / name
        if not source.is_file() or (target.is_file() and target.stat().st_mtime >= source.stat().st_mtime):
            continue
        if jpegtran and source.suffix.lower() in (".jpg", ".jpeg"):
            lean = subprocess.run([jpegtran, "-optimize", "-copy", "none", str(source)], capture_output=True).stdout
            if lean and np.array_equal(_decode(lean), _decode(source.read_bytes())):
                target.write_bytes(lean)
                continue
        shutil.copyfile(source, target)
    raw = json.loads((real / "acne04v2_lesions.json").read_text())  # only what acne04_circles reads
    lean = {"images": [{k: img[k] for k in ("id", "file_name", "width", "height")} for img in raw["images"]],
            "annotations": [{k: ann[k] for k in ("image_id", "coordinates", "radius")} for ann in raw["annotations"]]}
    (out / "acne04-train" / "acne04v2_lesions.json").write_text(json.dumps(lean, separators=(",", ":")))
    wheels = out / "wheels"
    wheels.mkdir(exist_ok=True)
    if not list(wheels.glob("segmentation_models_pytorch-*.whl")):
        from importlib.metadata import version

        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:", "-d",
                        str(wheels), f"segmentation_models_pytorch=={version('segmentation_models_pytorch')}"],
                       check=True)
    print(f"packed {len(faces)} faces, {len(names)} annotated ACNE04 training photos and "
          f"{', '.join(p.name for p in wheels.glob('*.whl'))} into {out}")
    report_size(out)
    return 0


def _decode(payload: bytes):
    import cv2

    return cv2.imdecode(np.frombuffer(payload, np.uint8), cv2.IMREAD_UNCHANGED)


def report_size(pack: Path) -> float:
    """MiB the call would carry; says whether it fits and what `detach` frees."""
    tracked, packed = tracked_bytes() / 2**20, folder_bytes(pack) / 2**20
    total = tracked + packed
    print(f"the call carries {total:.1f} MiB: {tracked:.1f} tracked + {packed:.1f} in {pack.name} "
          f"(limit {BUDGET_MIB:.0f})")
    if total > BUDGET_MIB:
        held = (ROOT / DETACHED).stat().st_size / 2**20 if _is_tracked(DETACHED) else 0.0
        verdict = "fits after `detach`" if total - held <= BUDGET_MIB else "does not fit even after `detach`"
        print(f"over the limit: it {verdict} ({DETACHED}, {held:.1f} MiB, leaves the index for the call)")
    return total


def _is_tracked(path: str) -> bool:
    return bool(_git("ls-files", "--", path).stdout.strip())


def _exclude_file() -> Path:
    return ROOT / _git("rev-parse", "--git-path", "info/exclude").stdout.strip()


def cmd_detach(args: argparse.Namespace) -> int:
    if _git("diff", "--cached", "--quiet", check=False).returncode != 0:
        raise SystemExit("staged changes in the index: commit or unstage them before `detach`")
    if _is_tracked(DETACHED):
        _git("rm", "--cached", "-q", "--", DETACHED)
    exclude = _exclude_file()
    lines = exclude.read_text().splitlines() if exclude.is_file() else []
    if f"/{DETACHED}" not in lines:
        exclude.parent.mkdir(parents=True, exist_ok=True)
        exclude.write_text("\n".join([*lines, f"/{DETACHED}"]) + "\n")
    print(f"{DETACHED} is out of the index for the device call (still on disk). Do not commit until "
          "`scripts/gpu_stage.py attach` (or `join`) puts it back.")
    report_size(PACK)
    return 0


def attach() -> None:
    exclude = _exclude_file()
    if exclude.is_file():
        lines = exclude.read_text().splitlines()
        if f"/{DETACHED}" in lines:
            exclude.write_text("".join(f"{line}\n" for line in lines if line != f"/{DETACHED}"))
    if not _is_tracked(DETACHED):
        _git("reset", "-q", "--", DETACHED)
    if not _is_tracked(DETACHED):
        raise SystemExit(f"{DETACHED} is not back in the index: `git reset -- {DETACHED}` by hand")
    print(f"{DETACHED} is back in the index")


def split(checkpoint: Path, folder: Path, piece_mib: float = PIECE_MIB) -> list[Path]:
    """Cut a safetensors checkpoint into pieces under `piece_mib`, each a safetensors file holding
    whole tensors and the checkpoint's metadata plus which piece it is. Needs no torch."""
    from safetensors import safe_open
    from safetensors.numpy import save_file

    with safe_open(str(checkpoint), "np") as handle:
        metadata = handle.metadata() or {}
        tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    room = piece_mib * 2**20 - 2**16  # a piece's bytes, less room for its header
    groups: list[list[str]] = []
    sizes: list[int] = []
    for key in sorted(tensors, key=lambda k: (-tensors[k].nbytes, k)):  # first fit, largest first
        nbytes = tensors[key].nbytes
        if nbytes > room:
            raise ValueError(f"{key}: one tensor of {nbytes / 2**20:.1f} MiB is over a piece's {piece_mib} MiB")
        slot = next((i for i, used in enumerate(sizes) if used + nbytes <= room), None)
        if slot is None:
            groups.append([])
            sizes.append(0)
            slot = len(groups) - 1
        groups[slot].append(key)
        sizes[slot] += nbytes
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, keys in enumerate(groups):
        path = folder / f"{checkpoint.stem}.part{index + 1}of{len(groups)}.safetensors"
        save_file({k: tensors[k] for k in keys}, str(path),
                  metadata={**metadata, PIECE_KEY: json.dumps([index + 1, len(groups)])})
        paths.append(path)
    return paths


def join(folder: Path, target: Path, stem: str = "best") -> Path:
    """The checkpoint `split` cut into `folder`'s pieces, written atomically to `target`; a missing
    or doubled piece, or pieces of two checkpoints, raise ValueError."""
    from safetensors import safe_open
    from safetensors.numpy import save_file

    pieces = sorted(folder.glob(f"{stem}.part*of*.safetensors"))
    if not pieces:
        raise ValueError(f"{folder}: no {stem}.partNofM.safetensors pieces")
    tensors, metadata, seen = {}, None, set()
    for path in pieces:
        with safe_open(str(path), "np") as handle:
            meta = dict(handle.metadata() or {})
            index, count = json.loads(meta.pop(PIECE_KEY))
            if metadata is not None and meta != metadata:
                raise ValueError(f"{path.name}: a piece of another checkpoint")
            metadata = meta
            seen.add(index)
            for key in handle.keys():
                tensors[key] = handle.get_tensor(key)
    if seen != set(range(1, count + 1)) or len(pieces) != count:
        raise ValueError(f"{folder}: pieces {sorted(seen)} of {count}")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".tmp")
    save_file(tensors, str(tmp), metadata=metadata)
    os.replace(tmp, target)
    return target


def cmd_split(args: argparse.Namespace) -> int:
    for path in split(Path(args.checkpoint), Path(args.folder)):
        print(f"wrote {path} ({path.stat().st_size / 2**20:.1f} MiB)")
    return 0


def cmd_join(args: argparse.Namespace) -> int:
    folder, run = Path(args.folder), Path(args.run)
    target = join(folder, run / "best.safetensors")
    for name in ("metrics.csv", "config.json", "train.log"):
        if (folder / name).is_file():
            shutil.copyfile(folder / name, run / name)
    print(f"wrote {target} ({target.stat().st_size / 2**20:.1f} MiB)")
    attach()
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    pack = sub.add_parser("pack", help="write .gpu/: prepared faces, ACNE04 training photos, smp wheel")
    pack.add_argument("--out", default=str(PACK))
    pack.add_argument("--faces", default=str(ROOT.parent / "shared" / "data" / "faces-cc0"))
    pack.add_argument("--real", default=str(ROOT.parent / "shared" / "data" / "acne04-train"))
    pack.add_argument("--quality", type=int, default=85, help="WebP quality of the prepared faces")
    pack.set_defaults(func=cmd_pack)
    sub.add_parser("detach", help=f"take {DETACHED} out of the git index for the call").set_defaults(func=cmd_detach)
    sub.add_parser("attach", help="put it back").set_defaults(func=lambda _: attach() or 0)
    cut = sub.add_parser("split", help="(on the machine) cut a checkpoint into pieces under 16 MiB")
    cut.add_argument("checkpoint")
    cut.add_argument("folder")
    cut.set_defaults(func=cmd_split)
    glue = sub.add_parser("join", help="the pieces back into RUN/best.safetensors, then attach")
    glue.add_argument("folder", help="where the call's files landed (files_at)")
    glue.add_argument("run", help="run folder to write, e.g. runs/gpu")
    glue.set_defaults(func=cmd_join)
    args = parser.parse_args()
    try:
        return args.func(args)
    except Exception as err:  # noqa: BLE001 - one clear line for the person at the terminal
        from core.errors import GlowAIError

        if isinstance(err, GlowAIError | ValueError | OSError | subprocess.CalledProcessError):
            print(f"error: {err}", file=sys.stderr)
            return 1
        raise


if __name__ == "__main__":
    sys.exit(main())
