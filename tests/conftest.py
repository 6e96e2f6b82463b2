"""Shared fixtures. Tests run offline: no hub lookups, no analytics, tiny models built here."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"

from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "data" / "examples"
SHARED_DATA = ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def portrait_path() -> Path:
    return EXAMPLES / "portrait-001.jpg"


@pytest.fixture(scope="session")
def portrait(portrait_path) -> np.ndarray:
    from core.imageio import load_image

    return load_image(portrait_path)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"reference data not found at {SHARED_DATA} (a fresh clone has no ../shared)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory) -> Path:
    """A real, randomly initialised, seeded smp U-Net (about 0.3 M parameters) saved as safetensors."""
    import torch

    from core.labels import LABELS
    from core.segmentation import build_model
    from weights import WeightSpec, save_checkpoint

    spec = WeightSpec(name="tiny-test-unet", task="blemish-segmentation", arch="Unet",
                      encoder="tu-mobilenetv3_small_050", classes=tuple(label.name for label in LABELS),
                      input_size=256, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), license="Apache-2.0",
                      arch_kwargs={"encoder_depth": 4, "decoder_channels": [32, 16, 8, 8]})
    torch.manual_seed(0)
    model = build_model(spec.arch, spec.encoder, **spec.arch_kwargs)
    # a strong bias towards "background" with one class winning on reddish pixels keeps maps sparse
    with torch.no_grad():
        model.segmentation_head[0].bias.copy_(torch.tensor([2.0, 0.0, -1.0, -1.0, -1.0]))
    path = tmp_path_factory.mktemp("weights") / "tiny.safetensors"
    save_checkpoint(model.state_dict(), path, spec)
    return path


@pytest.fixture()
def isolated_cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("GLOWAI_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def start_server(args: list[str], ready: str, log_path: Path, what: str, env: dict | None = None):
    """`python -m apps.cli ARGS --port P` on a free loopback port, its output in `log_path`, waited on
    until GET `ready` (a path under the URL) answers 200. Returns (process, url, open log file);
    fails the test with the log's tail when the server exits or is not up within 90 s."""
    import socket
    import subprocess
    import sys
    import time
    import urllib.request

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    log = open(log_path, "w+")  # noqa: SIM115 - the caller closes it with the server
    process = subprocess.Popen([sys.executable, "-m", "apps.cli", *args, "--port", str(port)], cwd=ROOT,
                               env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 90
    while True:
        try:
            with urllib.request.urlopen(url + ready, timeout=2) as response:
                if response.status == 200:
                    return process, url, log
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            log.seek(0)
            pytest.fail(f"the {what} did not start on {url}:\n{log.read()[-3000:]}")
        time.sleep(0.5)


@pytest.fixture(scope="session")
def demo_server(tmp_path_factory):
    """The demo served by `glowai demo` in a real process on a free loopback port: (url, process, temp dir)."""
    import subprocess

    temp = tmp_path_factory.mktemp("demo-temp")
    env = {**os.environ, "GRADIO_TEMP_DIR": str(temp), "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False"}
    process, url, log = start_server(["demo", "--queue-size", "8"], "", tmp_path_factory.mktemp("demo-log") / "demo.log",
                                     "demo", env)
    yield url, process, temp
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
    log.close()


@pytest.fixture(scope="session")
def artifacts() -> Path:
    """Where tests leave pictures for people to look at (screenshots); kept after the run."""
    folder = Path(os.environ.get("GLOWAI_ARTIFACTS", ROOT / "out" / "test-artifacts"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory) -> Path:
    """A real 12-sample procedural dataset (256 px) made from the CC0 examples (read-only: copy to change it)."""
    from synth.dataset import RunConfig, run

    out = tmp_path_factory.mktemp("tiny-synth") / "ds"
    run(RunConfig(backend="procedural", faces=str(EXAMPLES), seed=3, size=256), 12, out, workers=1, progress=False)
    return out


@pytest.fixture(scope="session")
def train_dataset(tmp_path_factory) -> Path:
    """A real 16-sample procedural dataset (128 px) with train and val identities, for training tests."""
    from synth.dataset import RunConfig, run

    out = tmp_path_factory.mktemp("synth-train") / "ds"
    run(RunConfig(backend="procedural", faces=str(EXAMPLES), seed=1, size=128), 16, out, workers=1, progress=False)
    return out


@pytest.fixture
def dataset_copy(tiny_dataset, tmp_path) -> Path:
    """A private copy of the tiny dataset that a test may curate, revise and export."""
    import shutil

    target = tmp_path / "ds"
    shutil.copytree(tiny_dataset, target)
    return target


def make_acne04_like(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """Two 640x640 photos named like ACNE04 (grade in the name), red spots drawn on one, with
    expert circles in acne04v2_lesions.json at twice the pixel scale. Returns (clean, spotted)."""
    import json

    import cv2

    from core.imageio import load_image

    (folder / "images").mkdir(parents=True)
    face = cv2.resize(load_image(EXAMPLES / "portrait-001.jpg"), (640, 640))
    spots = [(300, 420), (350, 430), (250, 300)]
    spotted = face.copy()
    for x, y in spots:
        cv2.circle(spotted, (x, y), 5, (200, 40, 50), -1)
    cv2.imwrite(str(folder / "images" / "levle2_1.jpg"), cv2.cvtColor(spotted, cv2.COLOR_RGB2BGR))
    cv2.imwrite(str(folder / "images" / "levle0_2.jpg"), cv2.cvtColor(face, cv2.COLOR_RGB2BGR))
    lesions = {"images": [{"id": 0, "file_name": "levle2_1.jpg", "width": 1280, "height": 1280}],
               "annotations": [{"id": i, "image_id": 0, "radius": 16, "coordinates": [2 * x, 2 * y]}
                               for i, (x, y) in enumerate(spots)]}
    (folder / "acne04v2_lesions.json").write_text(json.dumps(lesions))
    return face, spotted


LESION_TINY = dict(encoder="tu-mobilenetv3_small_050", decoder_channels=(16, 16, 8, 8, 8), batch=4, patch=64,
                   size=128, val_limit=4, lr=1e-3, loss="ce+dice")


@pytest.fixture(scope="session")
def lesion_run(tmp_path_factory, train_dataset):
    """A tiny real model with the lesion head, trained one epoch on synth + ACNE04-like photos,
    started from a checkpoint without the head: (run folder, best metrics, ACNE04-like folder)."""
    from core.model.train import TrainConfig, train

    root = tmp_path_factory.mktemp("lesion-run")
    make_acne04_like(root / "acne")
    plain = root / "plain"
    train(TrainConfig(data=str(train_dataset), out=str(plain), epochs=1, **LESION_TINY), progress=False)
    run = root / "run"
    best = train(TrainConfig(data=str(train_dataset), out=str(run), epochs=1, init=str(plain / "best.safetensors"),
                             real=str(root / "acne"), real_val=1, real_share=0.5, lesion_head=True,
                             synth_lesions=False, license="research-only", **LESION_TINY), progress=False)
    return run, best, root / "acne"


def load_script(name: str):
    """A script of scripts/ (NAME.py) as a module, to call its functions and main() in-process."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "scripts" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def segmenter_with_heat(weights: Path, heat_at: list[tuple[int, int]], isolated_cache,
                        heights: list[float] | None = None, count_threshold: float | None = None):
    """A real tiny lesion-head Segmenter whose heatmap logits are replaced by Gaussians at
    `heat_at` (network pixels; peak values `heights`, else 1), so the post-processing is checked
    against known peaks."""
    from core.labels import NUM_CLASSES
    from core.model.data import lesion_heatmap
    from core.segmentation import Segmenter, SegmenterOptions

    segmenter = Segmenter(SegmenterOptions(weights=str(weights), runtime="torch-fp32", lesion_threshold=0.5,
                                           lesion_count_threshold=count_threshold, keep_lesion_heat=True))
    forward = segmenter._forward

    def with_peaks(x: np.ndarray) -> np.ndarray:
        out = forward(x)
        heat = np.zeros(out.shape[2:], np.float32)
        for (cx, cy), height in zip(heat_at, heights or [1.0] * len(heat_at), strict=True):
            np.maximum(heat, height * lesion_heatmap(out.shape[2:], np.array([(cx, cy, 4.0)], np.float32)), out=heat)
        out[0, NUM_CLASSES] = np.log(np.clip(heat, 1e-4, 1 - 1e-4) / (1 - np.clip(heat, 1e-4, 1 - 1e-4)))
        return out

    segmenter._forward = with_peaks
    return segmenter


@pytest.fixture(scope="session")
def acne_folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("acne") / "acne04-like"
    make_acne04_like(folder)
    return folder


def _postgres_url() -> str | None:
    url = os.environ.get("GLOWAI_TEST_PG_URL")
    if not url:
        if os.environ.get("CI"):
            raise RuntimeError("GLOWAI_TEST_PG_URL is not set on CI: .ci/run must start PostgreSQL")
        return None
    return url


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path) -> str:
    """A fresh, empty curation database: SQLite in tmp_path, or the PostgreSQL that .ci/run starts
    (scripts/test_postgres.sh; GLOWAI_TEST_PG_URL), emptied first."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'curation.db'}"
    url = _postgres_url()
    if url is None:
        pytest.skip("no PostgreSQL for tests (run scripts/test_postgres.sh start and export GLOWAI_TEST_PG_URL)")
    import sqlalchemy as sa

    from core.curation.store import metadata

    engine = sa.create_engine(url)
    metadata.drop_all(engine)
    engine.dispose()
    return url


def start_demo(tmp: Path, log: Path, *extra: str):
    """`glowai demo` in its own process with TMPDIR=tmp (so its private folder lands there):
    (process, url). `extra` goes to the command line."""
    import socket
    import subprocess
    import sys
    import time
    import urllib.request

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if k != "GRADIO_TEMP_DIR"}
    env.update(TMPDIR=str(tmp), HF_HUB_OFFLINE="1", GRADIO_ANALYTICS_ENABLED="False")
    with open(log, "a") as out:
        server = subprocess.Popen([sys.executable, "-m", "apps.cli", "demo", "--port", str(port), *extra], cwd=ROOT, env=env,
                                  stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 90
    while True:
        try:
            urllib.request.urlopen(url, timeout=2)
            return server, url
        except OSError:
            assert server.poll() is None and time.monotonic() < deadline, log.read_text()[-2000:]
            time.sleep(0.5)
