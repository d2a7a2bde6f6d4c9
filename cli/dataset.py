"""``rerf dataset ...``: make, import and inspect multi-view datasets (thin CLI layer).

The work is in ``rerf_codec.datasets``: ``format`` (layout, loader, writer), ``mesh_render``
(Embree ray casting of mesh sequences), ``importers`` (NeRF-synthetic, ReRF/NHR captures),
``demo_scene`` (the built-in procedural scene) and ``preview`` (info, contact sheet).
Every command writes its output atomically and refuses an existing output without --force.
"""

from __future__ import annotations

from typing import Any

import click

from cli.main import _print_json, _progress, cli
from rerf_codec.errors import RerfUsageError


@cli.group()
def dataset() -> None:
    """Multi-view datasets: render from meshes, import, the demo scene, info, preview.

    Layout: DATA/transforms.json (cameras: intrinsics, camera-to-world poses in the
    NeRF/OpenGL convention, train/test split; frames, fps, bounding box) and
    DATA/images/{frame:06d}/{camera}.png.
    """


def _frames_option(text: str | None) -> tuple[int, int] | None:
    """``A:B`` (half-open) -> (A, B); either side may be omitted (resolved by the command)."""
    if text is None:
        return None
    parts = text.split(":")
    if len(parts) != 2:
        raise RerfUsageError(f"--frames must look like A:B (half-open), got {text!r}")
    try:
        a = int(parts[0]) if parts[0].strip() else 0
        b = int(parts[1]) if parts[1].strip() else -1
    except ValueError:
        raise RerfUsageError(f"--frames must look like A:B with integers, got {text!r}") from None
    if a < 0 or (b != -1 and b <= a):
        raise RerfUsageError(f"--frames {text!r} is empty or negative")
    return a, b


def _summary(title: str, out: str, report: dict[str, Any]) -> None:
    click.echo(f"{title} → {out}")
    for key in ("frames", "cameras", "train_cameras", "test_cameras", "size", "seconds", "images_per_second", "bytes"):
        if key in report:
            value = report[key]
            if isinstance(value, float):
                value = f"{value:,.2f}"
            elif isinstance(value, int):
                value = f"{value:,}"
            click.echo(f"  {key.replace('_', ' '):<18} {value}")


@dataset.command("info")
@click.argument("data", metavar="DATA")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
def info_cmd(data: str, as_json: bool) -> None:
    """Describe DATA: frames, cameras (train/test), resolution, bounding box, bytes on disk."""
    from rerf_codec.datasets.format import open_dataset
    from rerf_codec.datasets.preview import dataset_info, format_info

    summary = dataset_info(open_dataset(data))
    if as_json:
        _print_json(summary)
    else:
        click.echo(format_info(summary))


@dataset.command("preview")
@click.argument("data", metavar="DATA")
@click.option("-o", "--output", required=True, metavar="SHEET.png", help="Contact sheet PNG (written atomically).")
@click.option("--cameras", default=6, show_default=True, type=click.IntRange(1, 64), help="Rows: cameras shown.")
@click.option("--frames", "n_frames", default=6, show_default=True, type=click.IntRange(1, 64), help="Columns.")
@click.option("--size", default=128, show_default=True, type=click.IntRange(8, 1024), help="Tile size in pixels.")
@click.option("--force", is_flag=True, help="Overwrite an existing output file.")
def preview_cmd(data: str, output: str, cameras: int, n_frames: int, size: int, force: bool) -> None:
    """Write a contact sheet of DATA: rows are cameras, columns are frames."""
    from rerf_codec.datasets.format import open_dataset
    from rerf_codec.datasets.preview import write_contact_sheet

    sheet = write_contact_sheet(open_dataset(data), output, force=force, cameras=cameras, frames=n_frames, size=size)
    click.echo(f"contact sheet {sheet.shape[1]}×{sheet.shape[0]} → {output}")
