"""The studio at scale: a 10,000-sample manifest with 10,000 decisions and 2,000 tags.

Times, over --runs repetitions (p50/p95): loading (manifest + review state joined, what a page does
on every rerun, against the bare parquet read as the floor) and a filter change (filters, sort and
one page of the Review grid). The budget for a filter change is 1 s.
Run: .venv/bin/python bench/bench_labeler.py [--samples 10000] [--runs 20]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from common import percentiles

from core.curation.dataset import Filters, apply_filters, load_manifest, page, with_review
from core.curation.store import Store, default_url
from core.labels import CONDITIONS

TONES = ["very light", "light", "intermediate", "tan", "brown", "dark"]


def synthetic_manifest(n: int, seed: int = 0) -> pd.DataFrame:
    """Manifest rows shaped like `glowai synth` output (no pictures: filtering never opens them)."""
    rng = np.random.default_rng(seed)
    names = [c.name for c in CONDITIONS]
    primary = rng.choice(names, n)
    second = rng.choice(names, n)
    classes = [tuple(sorted({p, s})) if rng.random() < 0.35 else (p,) for p, s in zip(primary, second, strict=True)]
    ids = [f"0001-{i:06d}" for i in range(n)]
    return pd.DataFrame({
        "id": ids, "identity": rng.integers(0, 100, n).astype(str), "split": "train", "generator": "procedural",
        "primary": primary, "primary_severity": rng.integers(1, 4, n), "classes": classes,
        "tone": rng.choice(TONES, n), "ita": rng.uniform(-60, 70, n), "attempt": rng.integers(0, 2, n),
        "qc_delta_e": rng.uniform(2.5, 15, n), "qc_area_pct": rng.uniform(0.3, 35, n),
        "qc_edge_ratio": rng.uniform(0.3, 5, n), "qc_ring_contrast": rng.uniform(0, 25, n),
        "image": [f"images/{i}.png" for i in ids], "mask": [f"masks/{i}.png" for i in ids],
        "clean": [f"clean/{i}.png" for i in ids],
    })


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="glowai-bench-labeler-") as folder:
        root = Path(folder)
        manifest = synthetic_manifest(args.samples)
        manifest.to_parquet(root / "manifest.parquet", index=False)
        store = Store(default_url(root), root)
        rng = np.random.default_rng(1)
        ids = manifest["id"].to_numpy()
        for status in ("accepted", "rejected", "flagged"):
            store.decide(list(rng.choice(ids, args.samples // 3, replace=False)), status, "bench")
        store.add_tags(list(rng.choice(ids, 2000, replace=False)), ["check"], "bench")

        floor, load, change = [], [], []
        filter_sets = [Filters(classes=["acne"], severities=[2, 3], sort="delta E (visibility)"),
                       Filters(tones=["dark", "brown"], statuses=["unreviewed"], sort="mask area %", descending=True),
                       Filters(qc_flags=["faint", "sticker edge"], tag="check"),
                       Filters(identities=[str(i) for i in range(20)], classes=["texture", "dryness"])]
        for run in range(args.runs):
            start = time.perf_counter()
            pd.read_parquet(root / "manifest.parquet")
            floor.append((time.perf_counter() - start) * 1000)
            start = time.perf_counter()
            table = with_review(load_manifest(root), store.statuses(), store.tags())
            load.append((time.perf_counter() - start) * 1000)
            start = time.perf_counter()
            selected = apply_filters(table, filter_sets[run % len(filter_sets)])
            page(selected, 3, 24)
            change.append((time.perf_counter() - start) * 1000)
        store.close()

    (f50, f95), (l50, l95), (c50, c95) = percentiles(floor), percentiles(load), percentiles(change)
    print(f"{args.samples:,} samples, {args.samples // 3 * 3:,} decisions, 2,000 tags; {args.runs} runs (p50 / p95 ms)")
    print(f"bare parquet read (floor):           {f50:7.1f} / {f95:7.1f}")
    print(f"load: manifest + review state joined {l50:7.1f} / {l95:7.1f}  ({l50 / f50:.1f}x the floor)")
    print(f"filter change: filters, sort, page   {c50:7.1f} / {c95:7.1f}  (budget 1000 ms)")
    print(f"a rerun after a filter change (load + change): p95 {l95 + c95:.0f} ms")


if __name__ == "__main__":
    main()
