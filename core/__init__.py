"""GlowAI analysis core: decoding, faces, regions, segmentation, report. Imports no UI library.

`import core` is light: models and heavy libraries load on first use, never at import.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

__all__ = ["Analysis", "AnalyzeOptions", "Analyzer", "analyze", "load_image", "GlowAIError"]

if TYPE_CHECKING:
    from core.errors import GlowAIError
    from core.imageio import load_image
    from core.pipeline import Analysis, AnalyzeOptions, Analyzer, analyze


def __getattr__(name: str):
    if name in ("Analysis", "AnalyzeOptions", "Analyzer", "analyze"):
        from core import pipeline

        return getattr(pipeline, name)
    if name == "load_image":
        from core.imageio import load_image

        return load_image
    if name == "GlowAIError":
        from core.errors import GlowAIError

        return GlowAIError
    raise AttributeError(f"module 'core' has no attribute {name!r}")
