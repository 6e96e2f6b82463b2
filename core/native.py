"""Quieting native libraries: mediapipe and TFLite log straight to file descriptor 2 at start-up."""

from __future__ import annotations

import os
import sys
import warnings
from contextlib import contextmanager


@contextmanager
def silenced_native_stderr():
    """Send fd 2 to /dev/null for the duration (model construction and first run only: it is
    process-wide, so keep it short)."""
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="SymbolDatabase.GetPrototype")
            yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def import_mediapipe():
    """Import mediapipe with its start-up logging silenced."""
    # mediapipe 0.10.14 calls a protobuf API that protobuf 4.25 deprecates, on every frame
    warnings.filterwarnings("ignore", message="SymbolDatabase.GetPrototype", category=UserWarning)
    os.environ.setdefault("GLOG_minloglevel", "2")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with silenced_native_stderr():
        import mediapipe

    return mediapipe
