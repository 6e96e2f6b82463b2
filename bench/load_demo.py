"""Load on the launched demo: many gradio_client users running Analyze at once, then a burst past
a small queue.

Phase 1: `--users` clients (default 32) start together and each runs /analyze `--calls` times on a
CC0 portrait against a demo with the default queue; reports errors, p50/p95 latency, throughput,
the server's peak memory, and (baselines, same run) one user alone and the in-process rate: the same
photos through `Analyzer.analyze` in this process on as many threads as the demo runs at once (2).
The users run in this process, on the same cores as the server, so it also reports the CPU time
each side spent per analysis (/proc, getrusage) and the rate the server's own CPU cost allows.
Phase 2: a demo with `--small-queue` places (default 4) takes the same burst: requests beyond the
queue must get a clear busy message, the rest must succeed, and the server must keep serving.
Run: .venv/bin/python bench/load_demo.py [--users 32] [--calls 2]
"""

from __future__ import annotations

import argparse
import os
import resource
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

from common import ROOT, percentiles

SHOWN = ["Acne", "Redness", "Texture", "Dryness"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start(queue_size: int | None, temp: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    command = [sys.executable, "-m", "apps.cli", "demo", "--port", str(port)]
    if queue_size is not None:
        command += ["--queue-size", str(queue_size)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False", "GRADIO_TEMP_DIR": temp}
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/"
    for _ in range(240):
        try:
            urllib.request.urlopen(url, timeout=2)
            return process, url
        except OSError:
            time.sleep(0.5)
    process.kill()
    raise SystemExit("the demo did not start")


def peak_rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status", encoding="ascii") as handle:
        return next(int(line.split()[1]) / 1024 for line in handle if line.startswith("VmHWM:"))


def variants(photo: str, count: int, folder: str) -> list[str]:
    """One photo per user (brightness nudged by the user's number): real visitors send different
    photos, and identical outputs at the same moment would share one file in Gradio's
    content-addressed cache (a race this benchmark is not about)."""
    import numpy as np
    from PIL import Image

    base = np.asarray(Image.open(photo).convert("RGB")).astype(np.int16)
    paths = []
    for user in range(count):
        path = os.path.join(folder, f"user-{user:02d}.jpg")
        Image.fromarray(np.clip(base + (user % 16) - 8, 0, 255).astype(np.uint8)).save(path, quality=92)
        paths.append(path)
    return paths


def burst(url: str, users: int, calls: int, photos: list[str]) -> tuple[list[float], list[str]]:
    from gradio_client import Client, handle_file

    clients = [Client(url, verbose=False) for _ in range(users)]
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    gate = threading.Barrier(users)

    def user(client: Client, photo: str) -> None:
        gate.wait()
        for _ in range(calls):
            start_time = time.perf_counter()
            try:
                client.predict(handle_file(photo), "Face 1 (largest)", False, SHOWN, api_name="/analyze")
                with lock:
                    latencies.append((time.perf_counter() - start_time) * 1000)
            except Exception as err:  # noqa: BLE001 - every failure is counted and shown
                with lock:
                    errors.append(" ".join(str(err).split())[:120] or type(err).__name__)

    threads = [threading.Thread(target=user, args=(c, photos[i % len(photos)])) for i, c in enumerate(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return latencies, errors


def cpu_seconds(pid: int | None = None) -> float:
    """CPU time (user + system, all threads) of process `pid`, or of this process."""
    if pid is None:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime
    with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def in_process_rate(photos: list[str], calls: int, workers: int = 2) -> tuple[float, float]:
    """Analyses per second of the bare pipeline on the same photos, `workers` at a time (the
    demo's concurrency limit), after one warm-up analysis; and CPU ms per analysis."""
    from concurrent.futures import ThreadPoolExecutor

    from core.pipeline import Analyzer

    with Analyzer() as analyzer:
        analyzer.analyze(photos[0])
        jobs = [photos[i % len(photos)] for i in range(len(photos) * calls)]
        began, cpu = time.perf_counter(), cpu_seconds()
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(analyzer.analyze, jobs))
        return len(jobs) / (time.perf_counter() - began), (cpu_seconds() - cpu) * 1000 / len(jobs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=32)
    parser.add_argument("--calls", type=int, default=2)
    parser.add_argument("--small-queue", type=int, default=4)
    parser.add_argument("--photo", default=str(ROOT / "data" / "examples" / "portrait-001.jpg"))
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="glowai-load-") as temp, tempfile.TemporaryDirectory() as photos_dir:
        photos = variants(args.photo, args.users, photos_dir)
        process, url = start(None, temp)
        try:
            alone, _ = burst(url, 1, 5, photos[:1])  # warm-up and the one-user baseline
            began, server_cpu, client_cpu = time.perf_counter(), cpu_seconds(process.pid), cpu_seconds()
            latencies, errors = burst(url, args.users, args.calls, photos)
            took = time.perf_counter() - began
            server_cpu, client_cpu = cpu_seconds(process.pid) - server_cpu, cpu_seconds() - client_cpu
            memory = peak_rss_mb(process.pid)
        finally:
            process.terminate()
            process.wait(timeout=30)
        (a50, _), (p50, p95) = percentiles(alone[1:]), percentiles(latencies or [float("nan")])
        served_rate = len(latencies) / took
        bare_rate, bare_cpu_ms = in_process_rate(photos, args.calls)
        served = max(1, len(latencies))
        print(f"phase 1: {args.users} users x {args.calls} /analyze calls, default queue")
        print(f"  errors: {len(errors)}" + (f" (first: {errors[0]})" if errors else ""))
        print(f"  latency p50 {p50:.0f} ms, p95 {p95:.0f} ms (one user alone: p50 {a50:.0f} ms); "
              f"{served_rate:.2f} analyses/s served")
        print(f"  in-process Analyzer.analyze, 2 at a time, same photos: {bare_rate:.2f} analyses/s; "
              f"the demo serves {served_rate / bare_rate:.2f}x that")
        print(f"  CPU per served analysis: server {server_cpu * 1000 / served:.0f} ms against {bare_cpu_ms:.0f} ms "
              f"in-process; the {args.users} gradio_client users (this process, same cores) "
              f"{client_cpu * 1000 / served:.0f} ms; of the {took:.1f} s x {os.cpu_count()} cores, the server used "
              f"{100 * server_cpu / (took * (os.cpu_count() or 1)):.0f} %, the clients "
              f"{100 * client_cpu / (took * (os.cpu_count() or 1)):.0f} %")
        capacity = (os.cpu_count() or 1) / max(server_cpu / served, 1e-9)
        print(f"  so a server whose visitors are elsewhere could serve about {capacity:.1f} analyses/s "
              f"({capacity / bare_rate:.2f}x the in-process rate): the web layer costs "
              f"{server_cpu * 1000 / served - bare_cpu_ms:.0f} ms of CPU an analysis")
        print(f"  server peak memory {memory:.0f} MiB")

        process, url = start(args.small_queue, temp)
        try:
            latencies, errors = burst(url, args.users, 1, photos)
            after, after_errors = burst(url, 1, 1, photos[:1])
            alive = process.poll() is None
        finally:
            process.terminate()
            process.wait(timeout=30)
        busy = [e for e in errors if "queue is full" in e.lower()]
        print(f"phase 2: {args.users} users at once, queue of {args.small_queue}")
        other = [e for e in errors if e not in busy]
        print(f"  served {len(latencies)}, told busy {len(busy)} ({busy[0] if busy else '-'}), "
              f"other errors {len(other)}" + (f" (first: {other[0]})" if other else ""))
        print(f"  server alive afterwards: {alive}; next request served: {len(after) == 1 and not after_errors}")


if __name__ == "__main__":
    main()
