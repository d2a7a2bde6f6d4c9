"""Radiance field shared by trainer, player and benches (DESIGN.md decision 6).

``geometry`` places the grid in the world, ``mlp`` is the global colour network,
``render`` samples, composites and renders cameras. Importing this package imports
torch; the codec's decoder never does.
"""

from rerf_codec.field.geometry import GridGeometry, ray_box
from rerf_codec.field.mlp import ColorMLP, MLPConfig, encode_directions, seeded_mlp
from rerf_codec.field.render import (
    ALPHA_THRESHOLD,
    STEP_RATIO,
    WEIGHT_THRESHOLD,
    RadianceField,
    RenderOutput,
    RenderSettings,
    occupancy_from_density,
    render_rays,
    resolve_device,
    sample_grid,
)

__all__ = [
    "ALPHA_THRESHOLD",
    "STEP_RATIO",
    "WEIGHT_THRESHOLD",
    "ColorMLP",
    "GridGeometry",
    "MLPConfig",
    "RadianceField",
    "RenderOutput",
    "RenderSettings",
    "encode_directions",
    "occupancy_from_density",
    "ray_box",
    "render_rays",
    "resolve_device",
    "sample_grid",
    "seeded_mlp",
]
