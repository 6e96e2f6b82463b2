"""Beauty filters over the analysis core: retouch, skin-only smoothing, makeup, live mode."""

from core.filters.live import LiveFilter, LiveOptions, OneEuroFilter
from core.filters.makeup import (
    REGIONS,
    Preset,
    RegionLook,
    apply_makeup,
    builtin_presets,
    extract_makeup,
    load_preset,
    save_preset,
)
from core.filters.retouch import retouch, smooth_skin

__all__ = ["REGIONS", "LiveFilter", "LiveOptions", "OneEuroFilter", "Preset", "RegionLook", "apply_makeup",
           "builtin_presets", "extract_makeup", "load_preset", "retouch", "save_preset", "smooth_skin"]
