"""`glowai` commands for data, filters and training (the parser lives in apps/cli/main.py)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from core.errors import GlowAIError
from core.files import write_png


def cmd_synth(args: argparse.Namespace) -> int:
    from synth.dataset import RunConfig, balance_table, merge, run

    if args.action == "sheet":
        if not args.out:
            raise GlowAIError("usage: glowai synth sheet --out DATASET_DIR [--n 24]")
        from synth.sheet import contact_sheet

        target = Path(args.out) / "contact_sheet.png"
        write_png(target, contact_sheet(Path(args.out), args.n or 24))
        print(f"wrote {target}")
        return 0
    if args.action == "faces":
        if not args.faces or not args.out or not args.out.endswith(".npz"):
            raise GlowAIError("usage: glowai synth faces --faces DIR --out FILE.npz [--quality 95]")
        from synth.dataset import prepare_faces
        from synth.faces import save_faces

        faces = prepare_faces(Path(args.faces), RunConfig(backend=args.backend, faces=args.faces, seed=args.seed).size,
                              progress=not args.quiet)
        size = save_faces(faces, Path(args.out), args.quality)
        print(f"wrote {len(faces)} prepared faces to {args.out} ({size / 2**20:.1f} MiB)")
        return 0
    if args.action == "merge":
        if not args.out or not args.parts:
            raise GlowAIError("usage: glowai synth merge --out DIR PART_DIR [PART_DIR ...]")
        manifest = merge(Path(args.out), [Path(p) for p in args.parts])
    else:
        if args.parts:
            raise GlowAIError(f"unexpected arguments {' '.join(args.parts)}; did you mean `glowai synth merge`?")
        missing = [name for name in ("faces", "n", "out") if getattr(args, name) is None]
        if missing:
            raise GlowAIError(f"glowai synth needs {', '.join('--' + m for m in missing)}")
        try:
            index, count = (int(v) for v in args.shard.split("/"))
            assert 0 <= index < count
        except (ValueError, AssertionError):
            raise GlowAIError(f"--shard {args.shard}: use I/N with 0 <= I < N, e.g. 0/4") from None
        config = RunConfig(backend=args.backend, faces=args.faces, seed=args.seed,
                           classes=tuple(args.classes.split(",")),
                           severities=tuple(int(v) for v in args.severity.split(",")))
        manifest = run(config, args.n, Path(args.out), (index, count), args.workers, progress=not args.quiet)
    print(balance_table(manifest))
    retries = int(manifest["attempt"].sum()) if len(manifest) else 0
    print(f"{len(manifest)} samples in {args.out} ({retries} attempts rejected by QC and redrawn); "
          f"manifest: {Path(args.out) / 'manifest.parquet'}")
    return 0


def _face(photo: Path, face_index: int | None, segment: bool, weights: str | None = None):
    """Analyse one photo for a filter: (analysis) with landmarks; bad input raises GlowAIError."""
    from core.pipeline import AnalyzeOptions, Analyzer
    from core.segmentation import SegmenterOptions

    with Analyzer(AnalyzeOptions(face_index=face_index, segment=segment,
                                 segmenter=SegmenterOptions(weights=weights))) as analyzer:
        return analyzer.analyze(photo)


def cmd_makeup(args: argparse.Namespace) -> int:
    from core.filters import apply_makeup, builtin_presets, extract_makeup, load_preset, save_preset, smooth_skin
    from core.filters.masks import eye_unit

    if args.action == "list":
        for name, preset in builtin_presets().items():
            looks = ", ".join(f"{region} {look.color} x{look.intensity:g}" for region, look in preset.regions.items())
            print(f"{name}: {looks}")
        return 0
    if not args.photo or not args.out:
        raise GlowAIError(f"usage: glowai makeup {args.action} PHOTO --out OUT" + (" --preset P" if args.action == "apply" else ""))
    analysis = _face(Path(args.photo), args.face, segment=False)
    skin = analysis.regions.skin
    if args.action == "extract":
        preset = extract_makeup(analysis.image, analysis.landmarks, skin, name=args.name or Path(args.photo).stem,
                                credit=args.credit or Path(args.photo).name)
        save_preset(preset, Path(args.out))
        print(f"wrote {args.out}: " + ", ".join(f"{k} {v.color}" for k, v in preset.regions.items()))
        return 0
    if not args.preset:
        raise GlowAIError("glowai makeup apply needs --preset (a built-in name or a preset .json)")
    preset = load_preset(args.preset)
    regions = tuple(r for r in args.regions.split(",") if r)
    image = analysis.image
    if args.smooth:
        image = smooth_skin(image, skin, analysis.landmarks, eye_unit(analysis.landmarks), args.smooth)
    write_png(Path(args.out), apply_makeup(image, analysis.landmarks, preset, skin, regions, args.intensity))
    print(f"wrote {args.out} ({preset.name}: {', '.join(r for r in regions if r in preset.regions)})")
    return 0


def cmd_retouch(args: argparse.Namespace) -> int:
    import numpy as np

    from core.filters import retouch, smooth_skin
    from core.filters.masks import eye_unit
    from core.imageio import load_image
    from core.labels import label_by_name

    analysis = _face(Path(args.photo), args.face, segment=args.mask is None, weights=args.weights)
    image, skin, landmarks = analysis.image, analysis.regions.skin, analysis.landmarks
    unit = eye_unit(landmarks) if landmarks is not None else 0.25 * min(image.shape[:2])
    if args.mask:
        mask_image = load_image(args.mask)
        if mask_image.shape[:2] != image.shape[:2]:
            raise GlowAIError(f"--mask is {mask_image.shape[1]}x{mask_image.shape[0]}, the photo is analysed at "
                              f"{image.shape[1]}x{image.shape[0]}; make them the same size")
        blemishes = mask_image.max(axis=2) > 0
    elif analysis.segmentation is not None:
        classes = [label_by_name(c).index for c in ("acne", "redness")]
        blemishes = np.isin(analysis.segmentation.label_map, classes)
    else:
        blemishes = np.zeros(image.shape[:2], bool)
        print("glowai: no blemish model is installed and no --mask given: only smoothing is applied", file=sys.stderr)
    out = retouch(image, blemishes, skin, unit, args.strength)
    if args.smooth:
        out = smooth_skin(out, skin, landmarks, unit, args.smooth)
    write_png(Path(args.out), out)
    print(f"wrote {args.out} ({int(blemishes.sum())} blemish pixels retouched, smoothing {args.smooth:g})")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from core.model.train import TrainConfig, train

    config = TrainConfig(data=args.data, out=args.out, encoder=args.encoder, epochs=args.epochs, batch=args.batch,
                         lr=args.lr, loss=args.loss, size=args.size, patch=args.patch, seed=args.seed,
                         device=args.device, name=args.name,
                         decoder_channels=tuple(int(v) for v in args.decoder_channels.split(",")),
                         val_limit=args.val_limit, pretrained=args.pretrained, class_weight=args.class_weight,
                         init=args.init, real=args.real, real_share=args.real_share, real_val=args.real_val,
                         lesion_head=args.lesion_head, lesion_weight=args.lesion_weight,
                         synth_lesions=args.synth_lesions, freeze_bn=args.freeze_bn,
                         patches_per_image=args.patches_per_image, license=args.license, workers=args.workers)
    best = train(config, resume=args.resume, progress=not args.quiet)
    lesions = f", lesion F1 {best['lesion_f1']:.4f}" if "lesion_f1" in best else ""
    print(f"best val mIoU {best['miou']:.4f}{lesions} at epoch {best.get('epoch')}; "
          f"checkpoint {Path(args.out) / 'best.safetensors'}")
    return 0


def cmd_push(args: argparse.Namespace) -> int:
    from core.model.card import push

    folder, uploaded = push(Path(args.run), args.repo, Path(args.out) if args.out else None)
    if uploaded:
        print(f"uploaded {folder} to https://huggingface.co/{args.repo}")
    else:
        print(f"wrote {folder}; upload skipped: the network is off (HF_HUB_OFFLINE=1)")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from apps.demo import serve

    print(f"GlowAI demo on http://{args.host}:{args.port} (Ctrl+C to stop)", flush=True)
    serve(args.host, args.port, queue_size=args.queue_size)
    return 0


def cmd_labeler(args: argparse.Namespace) -> int:
    import os

    from core.curation.annotate import list_photos
    from core.curation.dataset import load_manifest
    from core.curation.store import Store, default_url

    if not args.data and not args.photos:
        raise GlowAIError("glowai labeler needs --data DIR (a synthetic dataset), --photos DIR (real photos), or both")
    if args.data:
        load_manifest(Path(args.data).resolve())  # a wrong folder fails here, with what to do
    if args.photos:
        list_photos(Path(args.photos))  # likewise: a folder without photos
    root = Path(args.data or args.photos).resolve()  # the store lives beside the dataset, else the photos
    url = args.db or default_url(root)
    Store(url, root).close()  # creates or checks the schema; a bad URL fails here
    project = Path(__file__).resolve().parents[2]
    evals = args.eval or [str(p) for p in [project.parent / "shared" / "data" / "acne04-dev"] if p.is_dir()]
    runs = args.runs or [str(p) for p in [project / "runs"] if p.is_dir()]
    env = {**os.environ, "GLOWAI_LABELER_DATA": str(Path(args.data).resolve()) if args.data else "",
           "GLOWAI_LABELER_PHOTOS": str(Path(args.photos).resolve()) if args.photos else "",
           "GLOWAI_LABELER_DB": url,
           "GLOWAI_LABELER_EVAL": os.pathsep.join(str(Path(e).resolve()) for e in evals),
           "GLOWAI_LABELER_RUNS": os.pathsep.join(str(Path(r).resolve()) for r in runs)}
    print(f"GlowAI studio on http://{args.host}:{args.port} for {root} (Ctrl+C to stop)", flush=True)
    command = [sys.executable, "-m", "streamlit", "run", str(project / "apps" / "labeler" / "app.py"),
               "--server.address", args.host, "--server.port", str(args.port), "--server.headless", "true",
               "--browser.gatherUsageStats", "false", "--client.toolbarMode", "minimal"]
    os.execve(sys.executable, command, env)  # streamlit takes over this process: signals reach it directly
    return 0  # not reached
