"""Procedural synthesis throughput at 512x512: samples/s for 1 worker and for all cores, same run.

Face preparation (detection, mesh, regions; done once per run) is timed separately.
Run: .venv/bin/python bench/bench_synth.py [--faces ../shared/data/faces-cc0] [--n 120]
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

from common import ROOT


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faces", default=str(ROOT.parent / "shared" / "data" / "faces-cc0"))
    parser.add_argument("--n", type=int, default=120)
    args = parser.parse_args()

    from synth import dataset

    config = dataset.RunConfig(backend="procedural", faces=args.faces, seed=7)
    start = time.perf_counter()
    faces = dataset.prepare_faces(Path(args.faces), config.size, progress=False)
    prep = time.perf_counter() - start
    plan = dataset.make_plan(config, args.n, faces)
    print(f"face preparation: {len(faces)} faces in {prep:.1f} s ({prep / len(faces) * 1000:.0f} ms/face)")
    results = {}
    for workers in sorted({1, os.cpu_count() or 1}):
        out = Path(tempfile.mkdtemp(prefix="glowai-bench-synth-"))
        for folder in ("images", "clean", "masks", "records"):
            (out / folder).mkdir()
        dataset._WORKER.update(plan=plan, config=config, out=out)
        start = time.perf_counter()
        if workers == 1:
            for spec in plan.specs:
                dataset._generate(spec)
        else:
            import multiprocessing

            with multiprocessing.get_context("fork").Pool(workers) as pool:
                list(pool.imap_unordered(dataset._generate, plan.specs, chunksize=2))
        results[workers] = args.n / (time.perf_counter() - start)
        shutil.rmtree(out)
        print(f"{workers} worker(s): {results[workers]:.1f} samples/s (render + QC + 3 PNGs + record, 512x512)")
    if len(results) > 1:
        print(f"speed-up of {max(results)} workers over 1: {results[max(results)] / results[1]:.2f}x")


if __name__ == "__main__":
    main()
