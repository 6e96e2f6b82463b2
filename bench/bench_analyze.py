"""Per-step latency of `analyze` over the CC0 portraits: p50 / p95 in ms, one warm-up photo.

Run: .venv/bin/python bench/bench_analyze.py [--data ../shared/data/faces-cc0] [--limit N] [--weights W]
     [--profile runs/profile-analyze.html]   (pyinstrument: the timed loop's call tree, HTML, and its top in text)
Without an installed blemish model the segment step runs a random-init U-Net of the registry
default's architecture, so the figure still includes the network's cost.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from common import ROOT, percentiles, stand_in_checkpoint


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "faces-cc0"))
    parser.add_argument("--limit", type=int, default=100)
    parser.add_argument("--weights", help="registry name or .safetensors; default: the registry default")
    parser.add_argument("--runtime", default="auto")
    parser.add_argument("--profile", help="write a pyinstrument profile of the timed loop to this .html file")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    import weights
    from core.errors import GlowAIError
    from core.pipeline import AnalyzeOptions, Analyzer
    from core.segmentation import SegmenterOptions

    chosen = args.weights
    note = ""
    if chosen is None and not weights.is_installed(weights.default_spec()):
        spec = weights.default_spec()
        chosen = str(stand_in_checkpoint(spec.encoder, spec.input_size))
        note = f" (default model not installed: random-init {spec.encoder} U-Net stand-in)"
    photos = sorted(p for p in Path(args.data).iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    photos = photos[: args.limit]
    options = AnalyzeOptions(segmenter=SegmenterOptions(weights=chosen, runtime=args.runtime))
    steps: dict[str, list[float]] = {}
    failed = 0
    profiler = None
    if args.profile:
        from pyinstrument import Profiler  # requirements-dev.txt

        profiler = Profiler(interval=0.0005)
    with Analyzer(options) as analyzer:
        analyzer.analyze(photos[0])  # warm-up: loads every model once
        if profiler:
            profiler.start()
        start = time.perf_counter()
        for photo in photos:
            try:
                analysis = analyzer.analyze(photo)
            except GlowAIError:
                failed += 1
                continue
            for step, ms in analysis.timings_ms.items():
                steps.setdefault(step, []).append(ms)
        wall = time.perf_counter() - start
        backends = analysis.backends
    if profiler:
        profiler.stop()
        Path(args.profile).parent.mkdir(parents=True, exist_ok=True)
        Path(args.profile).write_text(profiler.output_html(), encoding="utf-8")
        print(profiler.output_text(unicode=False, color=False, show_all=False, time="percent_of_total"))
        print(f"profile written to {args.profile} (profiling slows the loop: take the step times from a run without it)")
    print(f"analyze over {len(photos)} photos from {args.data}{note}")
    print(f"backends: {backends}")
    print(f"{'step':<10} {'p50 ms':>8} {'p95 ms':>8}")
    for step, values in steps.items():
        p50, p95 = percentiles(values)
        print(f"{step:<10} {p50:8.1f} {p95:8.1f}")
    print(f"{len(photos) - failed} analysed, {failed} without a face; {len(photos) / wall:.1f} photos/s")


if __name__ == "__main__":
    main()
