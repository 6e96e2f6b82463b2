"""The launched demo: start-up time, and gradio_client Analyze latency against in-process analyze.

Starts `glowai demo` in a real process (offline), times until the page answers, then calls /analyze
on a CC0 portrait `--runs` times (after one warm-up call that loads the models) and, in this
process as the baseline, `Analyzer.analyze` on the same photo. Reports p50/p95 of both, the ratio
(what the web layer costs), and the server's peak memory. The floor: a bare Gradio app (its own
process, same queue, the same photo uploaded, one small image back) called the same way, which
is what any gradio_client call costs on this machine before the demo does anything.
Run: .venv/bin/python bench/bench_demo.py [--photo PATH] [--runs 20]
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

from common import ROOT, percentiles

FLOOR_APP = """
import sys
import gradio as gr
import numpy as np
picture = np.full((560, 500, 3), 128, np.uint8)
with gr.Blocks() as app:
    photo, out = gr.Image(type="filepath"), gr.Image(format="jpeg")
    gr.Button().click(lambda path: picture, photo, out, api_name="floor")
app.queue().launch(server_port=int(sys.argv[1]), quiet=True)
"""


def start_demo(port: int, temp: str, floor: bool = False) -> tuple[subprocess.Popen, float]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False", "GRADIO_TEMP_DIR": temp}
    start = time.perf_counter()
    command = ["-c", FLOOR_APP, str(port)] if floor else ["-m", "apps.cli", "demo", "--port", str(port)]
    process = subprocess.Popen([sys.executable, *command], cwd=ROOT, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while time.perf_counter() - start < 120:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as response:
                if response.status == 200:
                    return process, time.perf_counter() - start
        except OSError:
            time.sleep(0.2)
    process.kill()
    raise SystemExit("the demo did not start within 120 s")


def peak_rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status", encoding="ascii") as handle:
        for line in handle:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photo", default=str(ROOT / "data" / "examples" / "portrait-001.jpg"))
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()

    from gradio_client import Client, handle_file

    from core.pipeline import Analyzer

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with tempfile.TemporaryDirectory(prefix="glowai-bench-demo-") as temp:
        process, startup_s = start_demo(port, temp)
        try:
            client = Client(f"http://127.0.0.1:{port}/", verbose=False)
            shown = ["Acne", "Redness", "Texture", "Dryness"]
            start = time.perf_counter()
            client.predict(handle_file(args.photo), "Face 1 (largest)", False, shown, api_name="/analyze")
            first_s = time.perf_counter() - start
            served = []
            for _ in range(args.runs):
                start = time.perf_counter()
                report = client.predict(handle_file(args.photo), "Face 1 (largest)", False, shown,
                                        api_name="/analyze")[5]
                served.append((time.perf_counter() - start) * 1000)
            assert report["segmentation"]["status"] == "ok"
            links = Client(f"http://127.0.0.1:{port}/", verbose=False, download_files=False)  # pictures left on the server
            links.predict(handle_file(args.photo), "Face 1 (largest)", False, shown, api_name="/analyze")
            undownloaded = []
            for _ in range(args.runs):
                start = time.perf_counter()
                links.predict(handle_file(args.photo), "Face 1 (largest)", False, shown, api_name="/analyze")
                undownloaded.append((time.perf_counter() - start) * 1000)
            server_mb = peak_rss_mb(process.pid)
        finally:
            process.terminate()
            process.wait(timeout=30)

    with tempfile.TemporaryDirectory(prefix="glowai-bench-floor-") as temp:
        process, _ = start_demo(port, temp, floor=True)
        try:
            client = Client(f"http://127.0.0.1:{port}/", verbose=False)
            client.predict(handle_file(args.photo), api_name="/floor")
            floor = []
            for _ in range(args.runs):
                start = time.perf_counter()
                client.predict(handle_file(args.photo), api_name="/floor")
                floor.append((time.perf_counter() - start) * 1000)
        finally:
            process.terminate()
            process.wait(timeout=30)

    with Analyzer() as analyzer:
        analyzer.analyze(args.photo)  # warm-up: models load
        direct = []
        for _ in range(args.runs):
            start = time.perf_counter()
            analyzer.analyze(args.photo)
            direct.append((time.perf_counter() - start) * 1000)

    (s50, s95), (d50, d95), (f50, _) = percentiles(served), percentiles(direct), percentiles(floor)
    print(f"demo start-up (process start to first page): {startup_s:.1f} s; first /analyze (loads models): {first_s:.1f} s")
    print(f"gradio_client /analyze over {args.runs} calls: p50 {s50:.0f} ms, p95 {s95:.0f} ms")
    print(f"in-process Analyzer.analyze (baseline):      p50 {d50:.0f} ms, p95 {d95:.0f} ms")
    print(f"the same with Client(download_files=False) (the 4 pictures and the report file stay on the server): "
          f"p50 {percentiles(undownloaded)[0]:.0f} ms")
    print(f"floor, a bare Gradio app's /floor (same upload, one picture back): p50 {f50:.0f} ms")
    print(f"web layer cost: {s50 / d50:.2f}x the bare analysis at p50 (overlays, card, chart, JSON, transfer); "
          f"the floor alone is {(d50 + f50) / d50:.2f}x, the demo adds {s50 - d50 - f50:.0f} ms above it")
    print(f"server peak memory: {server_mb:.0f} MiB")


if __name__ == "__main__":
    main()
