"""Typed errors. Every message is one line that says what went wrong and what to do."""

from __future__ import annotations


class GlowAIError(Exception):
    """Base of every error GlowAI raises on purpose; the CLI prints it as one line and exits 2."""


class ImageDecodeError(GlowAIError):
    """The input could not be turned into an RGB image (broken, hostile, unsupported or too big)."""


class ImageTooLargeError(ImageDecodeError):
    """The file or its pixel count is over the configured limit (decompression-bomb guard)."""


class NoFaceError(GlowAIError):
    """No face was found and whole-frame analysis was not requested."""


class FaceIndexError(GlowAIError):
    """The caller asked for a face number that the photo does not have."""


class WeightsError(GlowAIError):
    """A checkpoint is unknown, missing, unreadable, unsafe or fails its checksum."""


class BackendUnavailableError(GlowAIError):
    """An optional backend was requested but its package or weights are not installed."""
