"""`import core` loads no model and touches no network."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

PROBE = """
import socket, sys
def refuse(*args, **kwargs):
    raise AssertionError("network access during import")
socket.socket.connect = refuse
socket.create_connection = refuse
socket.getaddrinfo = refuse
import core, core.pipeline, apps.cli.main, core.evaluate, weights
heavy = sorted(m for m in ("torch", "mediapipe", "segmentation_models_pytorch", "onnxruntime", "gradio",
                           "streamlit", "diffusers") if m in sys.modules)
print("heavy:", heavy)
assert not heavy, heavy
"""


def test_import_core_is_light_and_offline():
    proc = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "heavy: []" in proc.stdout


def test_core_imports_no_ui_library():
    for path in (ROOT / "core").rglob("*.py"):
        text = path.read_text()
        for ui in ("import gradio", "import streamlit", "from gradio", "from streamlit"):
            assert ui not in text, f"{path.name} imports a UI library"
