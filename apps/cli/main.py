"""The `glowai` command line. Bad input exits 2 with one line on stderr, never a traceback."""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from core.errors import GlowAIError
from core.files import write_atomic, write_png

EXIT_BAD_INPUT = 2


def _output_path(option: str | None, photo: Path, several: bool, suffix: str) -> Path | None:
    """With several photos an output option names a folder, filled with <stem><suffix>."""
    if option is None:
        return None
    return Path(option) / f"{photo.stem}{suffix}" if several else Path(option)


def cmd_analyze(args: argparse.Namespace) -> int:
    import os
    from concurrent.futures import ThreadPoolExecutor

    from tqdm import tqdm

    from core.detection import DetectorOptions
    from core.overlays import condition_legend, mask_overlay, report_card, with_legend, zone_overlay
    from core.pipeline import AnalyzeOptions, Analyzer
    from core.segmentation import SegmenterOptions

    photos = [Path(p) for p in args.photos]
    several = len(photos) > 1
    # several photos: one per core at a time, each model call on one thread (bench/bench_folder.py: 1.44x the
    # photos/s of one photo at a time on all cores, start-up included); results are printed in the order given
    jobs = max(1, min(len(photos), args.jobs or os.cpu_count() or 1))
    options = AnalyzeOptions(
        face_index=args.face,
        whole_frame=args.whole_frame,
        detector=DetectorOptions(backend=args.detector),
        segmenter=SegmenterOptions(weights=args.weights, runtime=args.runtime, device=args.device,
                                   threads=1 if jobs > 1 else None),
    )
    failures = 0
    analyzer = Analyzer(options)  # thread-safe: the workers share its models

    def process(photo: Path) -> tuple[str | None, str | None]:
        """Analyse one photo and write its outputs: (summary, None) or (None, error message)."""
        try:
            analysis = analyzer.analyze(photo)
        except GlowAIError as err:
            return None, _one_line(err).removeprefix(f"{photo.name}: ").removeprefix(f"{photo}: ")
        report = analysis.to_json()
        report["file"] = photo.name
        if path := _output_path(args.json, photo, several, ".json"):
            write_atomic(path, (json.dumps(report, indent=2) + "\n").encode())
        if path := _output_path(args.overlay, photo, several, "_overlay.png"):
            seg = analysis.segmentation
            picture = mask_overlay(analysis.image, seg.label_map if seg else None, skin=analysis.regions.skin)
            picture = with_legend(picture, condition_legend()) if seg else zone_overlay(analysis.image, analysis.regions)
            write_png(path, picture)
        if path := _output_path(args.card, photo, several, "_card.png"):
            write_png(path, report_card(analysis))
        return _summary(photo, report), None

    # progress bar only for several photos on a terminal (disable=None: off when stderr is not a TTY)
    bar = tqdm(total=len(photos), desc="analyze", unit="photo", disable=True if (args.quiet or not several) else None,
               file=sys.stderr)
    pool = ThreadPoolExecutor(jobs)
    try:
        for photo, (summary, error) in zip(photos, pool.map(process, photos), strict=True):
            bar.update()
            if error is not None:
                _say(bar, f"glowai: {photo}: {error}", sys.stderr)
                failures += 1
            elif not args.quiet:
                _say(bar, summary, sys.stdout)
    finally:  # Ctrl+C or an error: photos not started are dropped, not all analysed first
        pool.shutdown(wait=True, cancel_futures=True)
        bar.close()
    analyzer.close()
    return EXIT_BAD_INPUT if failures else 0


def _say(bar, text: str, stream) -> None:
    """One line to `stream` without breaking an active progress bar."""
    if bar.disable:
        print(text, file=stream, flush=True)
    else:
        bar.write(text, file=stream)


def _summary(photo: Path, report: dict) -> str:
    tone = report["skin_tone"]
    head = f"{photo.name}: {report['mode'].replace('_', ' ')}, skin tone {tone['category']} (ITA {tone['ita']:.0f})"
    if report["conditions"] is None:
        head += "; no blemish model installed"
    else:
        head += "; " + ", ".join(f"{k} {v['severity']}" for k, v in report["conditions"].items())
    warnings = [q["name"] for q in report["quality"] if not q["ok"]]
    return head + (f"; check: {', '.join(warnings)}" if warnings else "")


def cmd_eval(args: argparse.Namespace) -> int:
    from core.evaluate import eval_detection, eval_makeup, eval_regions

    if args.what == "compare":
        from core.model.compare import compare_all

        if len(args.runs) < 2:
            raise GlowAIError("usage: glowai eval compare A B [C ...] [--data DIR] [--json OUT]; each a run folder, "
                              "an eval .json, or with --data a model name, .safetensors or baseline:redspot")
        png = Path(args.json).with_suffix(".png") if args.json else None
        if png is not None:  # before the evaluations, which can take minutes: a folder that cannot be made fails now
            png.parent.mkdir(parents=True, exist_ok=True)
        results: dict[str, dict] = {}
        table = compare_all(args.runs, png, Path(args.data) if args.data else None, progress=not args.quiet,
                            results=results)
        print(table.to_string(index=False))
        if args.json:
            out = Path(args.json)
            write_atomic(out, table.to_json(orient="records", indent=2).encode())
            for model, result in results.items():  # each evaluated model's whole result, for cards and sheets
                name = re.sub(r"[^A-Za-z0-9._-]+", "-", model)
                write_atomic(out.with_name(f"{out.stem}.{name}.json"), json.dumps(result, indent=1).encode())
        return 0
    if args.runs:
        raise GlowAIError(f"unexpected arguments {' '.join(args.runs)}")
    if not args.data:
        raise GlowAIError(f"glowai eval {args.what} needs --data DIR")
    if args.what == "segmentation":
        from core.model.evaluate import eval_segmentation

        result = eval_segmentation(Path(args.data), args.weights, progress=not args.quiet, runtime=args.runtime,
                                   thresholds={} if args.argmax else None)
        line = (f"{result['model']}{' (argmax)' if args.argmax else ''}: mIoU {result['miou']:.4f} over {result['count']} {result['split']} samples; "
                + ", ".join(f"{k} {v:.3f}" for k, v in result["per_class"].items())
                + f"; per-tone spread {result['per_tone_spread']}")
    elif args.what == "acne":
        from core.model.evaluate import eval_acne

        result = eval_acne(Path(args.data), args.weights, progress=not args.quiet, runtime=args.runtime)
        line = (f"{result['model']}: lesion recall {result['recall']}, precision {result['precision']}, "
                f"FP/image {result['fp_per_image']}, count MAE {result['count_mae']}, Spearman(count, grade) "
                f"{result['spearman']} over {result['photos']} photos ({result['whole_frame']} in whole-frame mode)")
    elif args.what == "makeup":
        result = eval_makeup(Path(args.data), progress=not args.quiet)
        line = (f"lip colour CIEDE2000: median {result['median_de2000']}, mean {result['mean_de2000']}, "
                f"p90 {result['p90_de2000']} over {result['count']} references; missed: {len(result['missed'])}")
    elif args.what == "regions":
        result = eval_regions(Path(args.data), progress=not args.quiet)
        line = (f"skin IoU: mean {result['mean_iou']:.4f}, median {result['median_iou']:.4f} over "
                f"{result['count']} images; faces missed: {len(result['missed'])}")
    else:
        result = eval_detection(Path(args.data), progress=not args.quiet)
        line = f"faces found: {result['found']}/{result['total']} {result['by_backend']}; missed: {result['missed']}"
    if args.json:
        write_atomic(Path(args.json), (json.dumps(result, indent=2) + "\n").encode())
    print(line)
    return 0


def cmd_weights(args: argparse.Namespace) -> int:
    from weights import find_local, specs

    rows = [("name", "task", "installed", "license", "source")]
    for spec in specs().values():
        local = find_local(spec)
        rows.append((spec.name + (" (default)" if spec.default else ""), spec.task,
                     "yes" if local else "no", spec.license, spec.source))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=False)).rstrip())
    return 0


def cmd_prepare(args: argparse.Namespace) -> int:
    """Make what the default blemish model's runtime needs before the first analysis (the ONNX
    export on a CPU without bf16, or --runtime onnx-int8's quantized model), so none waits for it."""
    import time

    from core.errors import WeightsError
    from core.segmentation import Segmenter, SegmenterOptions

    start = time.perf_counter()
    try:
        with Segmenter(SegmenterOptions(weights=args.weights, runtime=args.runtime)) as segmenter:
            name, runtime = segmenter.spec.name, segmenter.runtime
    except WeightsError as err:
        if args.weights is not None:
            raise
        print(f"nothing to prepare: {err}")
        return 0
    print(f"{name} ready on {runtime} ({time.perf_counter() - start:.1f} s)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from apps.cli.commands import cmd_demo, cmd_labeler, cmd_makeup, cmd_push, cmd_retouch, cmd_synth, cmd_train
    from core.segmentation import RUNTIMES

    parser = argparse.ArgumentParser(prog="glowai", description="GlowAI: facial skin analysis and beauty filters. "
                                     "Describes cosmetic features; not a medical device.")
    sub = parser.add_subparsers(dest="command", required=True)

    analyze = sub.add_parser("analyze", help="analyse the skin in one or more photos")
    analyze.add_argument("photos", nargs="+", metavar="PHOTO")
    analyze.add_argument("--json", metavar="OUT", help="write the JSON report (a folder when several photos)")
    analyze.add_argument("--overlay", metavar="OUT.png", help="write the photo with condition masks")
    analyze.add_argument("--card", metavar="OUT.png", help="write a one-image report card")
    analyze.add_argument("--face", type=int, metavar="N", help="analyse face N (0 = largest; default)")
    analyze.add_argument("--whole-frame", action="store_true", help="with no face found, analyse the frame as skin")
    analyze.add_argument("--weights", metavar="W", help="blemish model: registry name or .safetensors path")
    analyze.add_argument("--runtime", default="auto", choices=RUNTIMES)
    analyze.add_argument("--device", default="cpu", help="torch device for the blemish model (cpu, cuda)")
    analyze.add_argument("--detector", default="auto", choices=("auto", "mediapipe", "opencv", "facexlib"))
    analyze.add_argument("--jobs", type=int, metavar="N", help="photos analysed at once (default: one per core)")
    analyze.add_argument("--quiet", action="store_true", help="print nothing on success")
    analyze.set_defaults(func=cmd_analyze)

    evaluate = sub.add_parser("eval", help="evaluate on a reference folder")
    evaluate.add_argument("what", choices=("regions", "detection", "makeup", "segmentation", "acne", "compare"))
    evaluate.add_argument("runs", nargs="*", metavar="RUN", help="(compare) run folders, eval .json files, or models with --data")
    evaluate.add_argument("--data", metavar="DIR")
    evaluate.add_argument("--weights", metavar="W", help="registry name, .safetensors path, or baseline:redspot (acne)")
    evaluate.add_argument("--json", metavar="OUT")
    evaluate.add_argument("--runtime", default="auto", choices=RUNTIMES, help="(segmentation, acne) the model's runtime")
    evaluate.add_argument("--argmax", action="store_true",
                          help="(segmentation) plain argmax labels, without the model's decision thresholds")
    evaluate.add_argument("--quiet", action="store_true", help="no progress bar")
    evaluate.set_defaults(func=cmd_eval)

    synth = sub.add_parser("synth", help="generate synthetic training data with pixel-exact masks")
    synth.add_argument("action", nargs="?", choices=("merge", "sheet", "faces"),
                       help="merge: join shard folders into --out; sheet: contact sheet of --out; faces: prepare "
                            "the --faces photos once into --out FILE.npz, which --faces then takes (no mediapipe "
                            "needed where it is used)")
    synth.add_argument("parts", nargs="*", metavar="PART_DIR", help="(merge) shard output folders")
    synth.add_argument("--backend", default="procedural", choices=("procedural", "diffusion"))
    synth.add_argument("--faces", metavar="DIR", help="folder of clean face photos, or a .npz from `glowai synth faces`")
    synth.add_argument("--quality", type=int, default=95,
                       help="(faces) WebP quality of the stored pixels, 101 for lossless")
    synth.add_argument("--n", type=int, metavar="N", help="number of samples (all shards together)")
    synth.add_argument("--out", metavar="DIR", help="output dataset folder")
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--classes", default="acne,redness,texture,dryness", help="comma-separated conditions")
    synth.add_argument("--severity", default="1,2,3", help="comma-separated severity levels 0-3")
    synth.add_argument("--shard", default="0/1", metavar="I/N", help="this machine's part of the work")
    synth.add_argument("--workers", type=int, help="processes (default: all cores)")
    synth.add_argument("--quiet", action="store_true", help="no progress bars")
    synth.set_defaults(func=cmd_synth)

    makeup = sub.add_parser("makeup", help="extract makeup from a reference photo, or apply a preset")
    makeup.add_argument("action", choices=("extract", "apply", "list"))
    makeup.add_argument("photo", nargs="?", metavar="PHOTO", help="reference (extract) or face (apply)")
    makeup.add_argument("--out", metavar="OUT", help="preset .json (extract) or picture .png (apply)")
    makeup.add_argument("--preset", metavar="P", help="built-in preset name or preset .json")
    makeup.add_argument("--regions", default="lips,blush,eyeshadow", help="which regions to apply")
    makeup.add_argument("--intensity", type=float, default=1.0, help="0-1, scales every region")
    makeup.add_argument("--smooth", type=float, default=0.0, help="skin smoothing strength 0-1")
    makeup.add_argument("--face", type=int, metavar="N", help="face N (0 = largest)")
    makeup.add_argument("--name", help="(extract) preset name; default: the photo's name")
    makeup.add_argument("--credit", help="(extract) credit of the reference photo")
    makeup.set_defaults(func=cmd_makeup)

    retouch = sub.add_parser("retouch", help="retouch blemishes and smooth skin")
    retouch.add_argument("photo", metavar="PHOTO")
    retouch.add_argument("--out", required=True, metavar="OUT.png")
    retouch.add_argument("--strength", type=float, default=1.0, help="blemish retouch strength 0-1")
    retouch.add_argument("--smooth", type=float, default=0.3, help="skin smoothing strength 0-1")
    retouch.add_argument("--mask", metavar="M.png", help="retouch this mask (non-zero pixels) instead of the model's")
    retouch.add_argument("--weights", metavar="W", help="blemish model: registry name or .safetensors path")
    retouch.add_argument("--face", type=int, metavar="N", help="face N (0 = largest)")
    retouch.set_defaults(func=cmd_retouch)

    train = sub.add_parser("train", help="train the blemish segmentation model on a synth dataset")
    train.add_argument("--data", required=True, metavar="DIR", help="dataset folder from `glowai synth`")
    train.add_argument("--out", required=True, metavar="RUN", help="run folder (checkpoints, metrics)")
    train.add_argument("--encoder", default="resnet34")
    train.add_argument("--decoder-channels", default="256,128,64,32,16")
    train.add_argument("--epochs", type=int, default=30)
    train.add_argument("--batch", type=int, default=8)
    train.add_argument("--lr", type=float, default=1e-4)
    train.add_argument("--loss", default="ce", choices=("ce", "ce+dice"))
    train.add_argument("--class-weight", type=float, default=1.0,
                       help="cross-entropy weight of each condition against background (rare classes learn faster)")
    train.add_argument("--size", type=int, default=512, help="face-crop input size at inference")
    train.add_argument("--patch", type=int, default=256, help="training patch side (full resolution)")
    train.add_argument("--val-limit", type=int, default=120, help="validation images per epoch")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--device", default="cpu")
    train.add_argument("--name", default="glowai-unet", help="model name written into the checkpoint")
    train.add_argument("--pretrained", action="store_true", help="ImageNet encoder weights (needs the network)")
    train.add_argument("--init", metavar="W", help="fine-tune: start from these weights (registry name or "
                       ".safetensors path) instead of random ones; the architecture must match")
    train.add_argument("--real", metavar="DIR", help="ACNE04-like folder (images/ + acne04v2_lesions.json) whose "
                       "expert lesion circles train the lesion head (the training split, never the dev photos)")
    train.add_argument("--real-share", type=float, default=0.5, help="share of patches from --real photos")
    train.add_argument("--real-val", type=int, default=40, help="--real photos held out for lesion validation")
    train.add_argument("--lesion-head", action="store_true", help="add the lesion-centre heatmap output")
    train.add_argument("--lesion-weight", type=float, default=1.0, help="weight of the heatmap loss")
    train.add_argument("--no-synth-lesions", dest="synth_lesions", action="store_false",
                       help="only the --real photos' circles train the heatmap (procedural lesions still train the acne class)")
    train.add_argument("--freeze-bn", action="store_true",
                       help="keep BatchNorm's running statistics from --init (a short fine-tune on another data mix)")
    train.add_argument("--patches-per-image", type=int, default=1, help="patches per synthetic image per epoch")
    train.add_argument("--license", default="Apache-2.0", help="licence of the weights (follows the data)")
    train.add_argument("--workers", type=int, default=0, help="processes cutting training patches (0: the "
                       "training process; on a GPU give most CPU cores); the result does not depend on it")
    train.add_argument("--resume", action="store_true")
    train.add_argument("--quiet", action="store_true")
    train.set_defaults(func=cmd_train)

    weights = sub.add_parser("weights", help="the model registry")
    weights_sub = weights.add_subparsers(dest="weights_command", required=True)
    weights_sub.add_parser("list", help="show registered models and whether they are installed").set_defaults(
        func=cmd_weights)
    prepare = weights_sub.add_parser("prepare", help="make the default model's fast path now (ONNX export), not at "
                                     "the first analysis")
    prepare.add_argument("--weights", metavar="W", help="registry name or .safetensors (default: the registry default)")
    prepare.add_argument("--runtime", default="auto", choices=RUNTIMES)
    prepare.set_defaults(func=cmd_prepare)
    push = weights_sub.add_parser("push", help="write a Hub-ready folder for a run and upload it when online")
    push.add_argument("run", metavar="RUN")
    push.add_argument("--repo", required=True, metavar="ID", help="Hub repo id, e.g. glowai/glowai-unet-r34")
    push.add_argument("--out", metavar="DIR", help="folder to write (default: RUN/hub)")
    push.set_defaults(func=cmd_push)

    demo = sub.add_parser("demo", help="serve the Gradio demo (offline on the embedded models)")
    demo.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0 to share on a network)")
    demo.add_argument("--port", type=int, default=7860)
    demo.add_argument("--queue-size", type=int, default=48, help="requests waiting beyond this get a busy message")
    demo.set_defaults(func=cmd_demo)

    labeler = sub.add_parser("labeler", help="the Streamlit curation studio: synthetic data, labels of real photos")
    labeler.add_argument("--data", metavar="DIR", help="dataset folder from `glowai synth` (Review, Inspect, Export)")
    labeler.add_argument("--photos", metavar="DIR", help="real photos to label on the Annotate page (a folder of "
                         "photos or an ACNE04-like folder with images/); exports go to DIR/glowai-labels/")
    labeler.add_argument("--db", metavar="URL", help="curation database (default: sqlite file DIR/curation.db; "
                         "a team: postgresql+psycopg://user@host/db)")
    labeler.add_argument("--host", default="127.0.0.1")
    labeler.add_argument("--port", type=int, default=8501)
    labeler.add_argument("--eval", action="append", metavar="FOLDER", help="labelled real set for error analysis "
                         "(repeatable; default: ../shared/data/acne04-dev when present)")
    labeler.add_argument("--runs", action="append", metavar="FOLDER", help="folder of training runs to compare "
                         "(repeatable; default: ./runs when present)")
    labeler.set_defaults(func=cmd_labeler)
    return parser


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split())


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except GlowAIError as err:
        print(f"glowai: {_one_line(err)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("glowai: interrupted", file=sys.stderr)
        return 130


def entry() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entry()
