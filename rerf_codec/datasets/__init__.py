"""Multi-view datasets (DESIGN.md decision 7): the native format and its tools.

The native layout, camera/pixel conventions and the validating loader live in
``rerf_codec.datasets.format``; importers and renderers in sibling modules build on it.
"""

from rerf_codec.datasets.format import (
    FORMAT_NAME,
    FORMAT_VERSION,
    IMAGES_DIR,
    MAX_CAMERAS,
    MAX_FRAMES,
    MAX_IMAGE_SIDE,
    ROTATION_TOL,
    TRANSFORMS_JSON,
    Camera,
    Dataset,
    DatasetMeta,
    DatasetWriter,
    open_dataset,
    read_meta,
    split_cameras,
    write_dataset,
)

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "IMAGES_DIR",
    "MAX_CAMERAS",
    "MAX_FRAMES",
    "MAX_IMAGE_SIDE",
    "ROTATION_TOL",
    "TRANSFORMS_JSON",
    "Camera",
    "Dataset",
    "DatasetMeta",
    "DatasetWriter",
    "open_dataset",
    "read_meta",
    "split_cameras",
    "write_dataset",
]
