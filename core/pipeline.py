"""`analyze(image, options) -> Analysis`: the one public call of the analysis core."""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from core.detection import DetectorOptions, Face, FaceDetector
from core.errors import FaceIndexError, NoFaceError, WeightsError
from core.guidance import disclaimer, guidance
from core.imageio import DEFAULT_LIMITS, DecodeLimits, ImageSource, load_photo
from core.mesh import FaceMesher
from core.quality import check_quality
from core.regions import FaceRegions, RegionOptions, face_regions, whole_frame_regions
from core.report import REPORT_VERSION, build_report
from core.segmentation import Segmentation, Segmenter, SegmenterOptions


@dataclass(frozen=True)
class AnalyzeOptions:
    face_index: int | None = None  # which face (0 = largest); None: the largest
    whole_frame: bool = False  # with no face found, analyse the whole frame as skin
    max_side: int = 1600  # longer photos are downscaled to this long side before analysis
    decode: DecodeLimits = DEFAULT_LIMITS
    detector: DetectorOptions = field(default_factory=DetectorOptions)
    regions: RegionOptions = field(default_factory=RegionOptions)
    segmenter: SegmenterOptions = field(default_factory=SegmenterOptions)
    require_model: bool = False  # fail instead of reporting "no blemish model installed"
    segment: bool = True  # False: skip the blemish model (filters that need only the face)


@dataclass
class Analysis:
    """Everything one analysis produced. Arrays are in pixels of `image`, the analysed RGB uint8
    photo (the input, upright, downscaled by `scale` when it was larger than max_side)."""

    image: np.ndarray
    scale: float
    faces: list[Face]
    face_index: int | None  # None in whole-frame mode
    landmarks: np.ndarray | None
    regions: FaceRegions
    segmentation: Segmentation | None
    report: dict
    guidance: list[str]
    timings_ms: dict[str, float]
    backends: dict[str, str]

    def to_json(self) -> dict:
        """The versioned JSON report (schema: core/data/report.schema.json)."""
        return {
            "version": REPORT_VERSION,
            "image": {"width": int(self.image.shape[1]), "height": int(self.image.shape[0]),
                      "scale": round(self.scale, 4)},
            "faces": [{"box": [round(v, 1) for v in f.box], "score": round(f.score, 3), "backend": f.backend}
                      for f in self.faces],
            "face_index": self.face_index,
            "mode": "face" if self.face_index is not None else "whole_frame",
            "segmentation": {
                "status": "ok" if self.segmentation else "not_installed",
                "model": self.segmentation.model if self.segmentation else None,
                "message": None if self.segmentation else "No blemish model is installed; conditions were not measured.",
            },
            **self.report,
            "guidance": self.guidance,
            "disclaimer": disclaimer(),
            "timings_ms": {k: round(v, 1) for k, v in self.timings_ms.items()},
            "backends": self.backends,
        }


class Analyzer:
    """Holds the models for one set of options; `analyze` may be called from several threads."""

    def __init__(self, options: AnalyzeOptions | None = None) -> None:
        self.options = options or AnalyzeOptions()
        self.detector = FaceDetector(self.options.detector)
        self._mesher: FaceMesher | None = None
        self._segmenter: Segmenter | None = None
        self._segmenter_error: WeightsError | None = None
        self._lock = threading.Lock()

    @property
    def mesher(self) -> FaceMesher:
        with self._lock:
            if self._mesher is None:
                self._mesher = FaceMesher()
            return self._mesher

    def segmenter(self) -> Segmenter | None:
        """The blemish model, loaded once; None when the default model is not installed."""
        with self._lock:
            if self._segmenter is None and self._segmenter_error is None:
                try:
                    self._segmenter = Segmenter(self.options.segmenter)
                except WeightsError as err:
                    explicit = self.options.segmenter.weights is not None or self.options.require_model
                    if explicit:
                        raise
                    self._segmenter_error = err
            return self._segmenter

    def analyze(self, source: ImageSource, face_index: int | None = None, whole_frame: bool | None = None,
                segment: bool | None = None) -> Analysis:
        """Analyse `source`; `face_index`, `whole_frame` and `segment` override the options for this
        call only (a server shares one Analyzer, and its models, between requests that differ)."""
        opts = self.options
        face_index = opts.face_index if face_index is None else face_index
        whole_frame = opts.whole_frame if whole_frame is None else whole_frame
        segment = opts.segment if segment is None else segment
        timings: dict[str, float] = {}
        backends: dict[str, str] = {}

        # 1. Decode, upright, RGB, limits; downscale big photos.
        with _timed(timings, "decode"):
            image, scale = load_photo(source, opts.max_side, opts.decode)
        # 2. Faces, largest first.
        with _timed(timings, "detect"):
            faces = self.detector.detect(image)
        backends["detect"] = faces[0].backend if faces else self.detector.options.backend
        # 3. Choose the face; landmarks; regions (or the whole frame when asked).
        landmarks = None
        if faces:
            face_index = face_index if face_index is not None else 0
            if not 0 <= face_index < len(faces):
                raise FaceIndexError(f"face {face_index} asked for, but the photo has {len(faces)} face(s) "
                                     f"numbered 0-{len(faces) - 1}")
            with _timed(timings, "landmarks"):
                landmarks = self.mesher.landmarks(image, faces[face_index])
            backends["landmarks"] = self.mesher.backend
        if landmarks is None:
            if not whole_frame:
                what = "no face was found" if not faces else "the face was found but its features could not be located"
                raise NoFaceError(f"{what}; use a clear, front-facing photo, or --whole-frame for a close-up of skin")
            face_index = None
            with _timed(timings, "regions"):
                regions = whole_frame_regions(image)
        else:
            with _timed(timings, "regions"):
                regions = face_regions(image, landmarks, opts.regions)
        backends["regions"] = regions.backend
        # 4. Blemish segmentation restricted to skin.
        segmentation = None
        with _timed(timings, "segment"):
            segmenter = self.segmenter() if segment else None
            if segmenter is not None:
                segmentation = segmenter.segment(image, regions.skin)
        backends["segment"] = (f"{segmenter.spec.name} ({segmenter.runtime})" if segmenter
                               else "none installed" if segment else "skipped")
        # 5. Report, quality and guidance.
        with _timed(timings, "report"):
            box = faces[face_index].box if face_index is not None else (0, 0, image.shape[1], image.shape[0])
            quality = check_quality(image, box, regions.skin, regions.skin_lab_median[0], landmarks)
            report = build_report(regions, segmentation.label_map if segmentation else None, quality,
                                  segmentation.counted_lesions if segmentation else None,
                                  segmentation.lesion_density if segmentation else None)
            advice = guidance(report["conditions"], report["zones"], [q.message for q in quality if not q.ok])
        timings["total"] = sum(timings.values())
        return Analysis(image, scale, faces, face_index, landmarks, regions, segmentation, report, advice,
                        timings, backends)

    def close(self) -> None:
        self.detector.close()
        if self._mesher is not None:
            self._mesher.close()
        if self._segmenter is not None:
            self._segmenter.close()

    def __enter__(self) -> Analyzer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@lru_cache(maxsize=4)
def get_analyzer(options: AnalyzeOptions = AnalyzeOptions()) -> Analyzer:
    """A cached Analyzer per options: models load once per process, on first use."""
    return Analyzer(options)


def analyze(image: ImageSource, options: AnalyzeOptions | None = None) -> Analysis:
    """Analyse the skin of one face (or the whole frame) in `image`; see `Analysis`."""
    return get_analyzer(options or AnalyzeOptions()).analyze(image)


@contextmanager
def _timed(timings: dict[str, float], name: str):
    start = time.perf_counter()
    try:
        yield
    finally:
        timings[name] = timings.get(name, 0.0) + (time.perf_counter() - start) * 1000.0
