"""Radiance field shared by trainer, player and benches (DESIGN.md decision 6).

``camera`` is the one camera type and orbit rig (no torch), ``geometry`` places the grid in the
world, ``mlp`` is the global colour network, ``render`` samples, composites and renders cameras
(on CPU through ``native_render``'s compiled marcher when it is built).
The torch-based names load on first use (PEP 562), so ``rerf_codec.field.camera`` can be imported
where torch is not wanted (``rerf dataset``, ``rerf play``, the decoder side).
"""

from __future__ import annotations

import importlib
from typing import Any

_HOMES = {
    "Camera": "camera",
    "GridGeometry": "geometry",
    "ray_box": "geometry",
    "ColorMLP": "mlp",
    "MLPConfig": "mlp",
    "encode_directions": "mlp",
    "seeded_mlp": "mlp",
    "ALPHA_THRESHOLD": "render",
    "SHADING_MODES": "render",
    "STEP_RATIO": "render",
    "WEIGHT_THRESHOLD": "render",
    "RadianceField": "render",
    "RenderOutput": "render",
    "RenderSettings": "render",
    "occupancy_from_density": "render",
    "render_rays": "render",
    "resolve_device": "render",
    "sample_grid": "render",
}

__all__ = sorted(_HOMES)


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{home}"), name)
