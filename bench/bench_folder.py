"""`glowai analyze DIR/*.jpg` with one worker against the default (one per core), in the same run.

Runs the real CLI (JSON report per photo into a temporary folder) over the CC0 portraits, first
with --jobs 1, then with the default (one per core, one thread each), and reports wall time and photos/s of each (start-up and
model loading included, as a user sees them) and the ratio.
Run: .venv/bin/python bench/bench_folder.py [--data ../shared/data/faces-cc0] [--limit 100]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT


def run(photos: list[Path], jobs: int | None) -> float:
    with tempfile.TemporaryDirectory(prefix="glowai-bench-folder-") as out:
        command = [sys.executable, "-m", "apps.cli", "analyze", *map(str, photos), "--json", out + "/", "--quiet"]
        if jobs:
            command += ["--jobs", str(jobs)]
        start = time.perf_counter()
        subprocess.run(command, cwd=ROOT, env={**os.environ, "HF_HUB_OFFLINE": "1"}, check=False,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "faces-cc0"))
    parser.add_argument("--limit", type=int, default=100)
    args = parser.parse_args()
    photos = sorted(p for p in Path(args.data).iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))[: args.limit]
    one = run(photos, 1)
    default = run(photos, None)
    print(f"glowai analyze over {len(photos)} photos ({os.cpu_count()} cores), start-up included:")
    print(f"  --jobs 1          : {one:6.1f} s  {len(photos) / one:5.2f} photos/s")
    print(f"  default (per core): {default:6.1f} s  {len(photos) / default:5.2f} photos/s")
    print(f"  ratio: {one / default:.2f}x the one-worker rate")


if __name__ == "__main__":
    main()
