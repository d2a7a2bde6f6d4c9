"""``rerf dataset ...``: make, import and inspect multi-view datasets (thin CLI layer).

The work is in ``rerf_codec.datasets``: ``format`` (layout, loader, writer), ``mesh_render``
(Embree ray casting of mesh sequences), ``importers`` (NeRF-synthetic, ReRF/NHR captures),
``demo_scene`` (the built-in procedural scene) and ``preview`` (info, contact sheet).
Every command writes its output atomically and refuses an existing output without --force.
"""

from __future__ import annotations

from typing import Any

import click

from cli.common import FRAMES, print_json, progress_bar
from rerf_codec.framerange import FrameRange


@click.group()
def dataset() -> None:
    """Multi-view datasets: render from meshes, import, the demo scene, info, preview.

    Layout: DATA/transforms.json (cameras: intrinsics, camera-to-world poses in the
    NeRF/OpenGL convention, train/test split; frames, fps, bounding box) and
    DATA/images/{frame:06d}/{camera}.png.
    """


@dataset.command("info")
@click.argument("data", metavar="DATA")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
def info_cmd(data: str, as_json: bool) -> None:
    """Describe DATA: frames, cameras (train/test), resolution, bounding box, bytes on disk."""
    from rerf_codec.datasets.format import open_dataset
    from rerf_codec.datasets.preview import dataset_info, format_info

    summary = dataset_info(open_dataset(data))
    if as_json:
        print_json(summary)
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


@dataset.command("from-mesh")
@click.argument("mesh", metavar="MESH.npz")
@click.option("-o", "--output", required=True, metavar="DATA", help="Output dataset directory (written atomically).")
@click.option("--cameras", default=24, show_default=True, type=click.IntRange(1, 1024), help="Training cameras.")
@click.option("--test-cameras", default=4, show_default=True, type=click.IntRange(1, 1024), help="Held-out cameras.")
@click.option("--size", default=128, show_default=True, type=click.IntRange(8, 8192), help="Image size (pixels).")
@click.option("--frames", "frames", type=FRAMES, default=None, help="Mesh frames to render (half-open).")
@click.option("--step", default=1, show_default=True, type=click.IntRange(1, 10_000), help="Take every K-th frame.")
@click.option("--supersample", default=1, show_default=True, type=click.IntRange(1, 4), help="Rays per pixel axis.")
@click.option("--force", is_flag=True, help="Replace an existing dataset directory.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON report instead of the summary.")
def from_mesh_cmd(
    mesh: str, output: str, cameras: int, test_cameras: int, size: int, frames: FrameRange | None, step: int,
    supersample: int, force: bool, as_json: bool,
) -> None:
    """Render a mesh sequence (vertices[T,V,3], faces[F,3]) into a multi-view dataset.

    Cameras ring the sequence's bounding box; the surface gets a texture from its frame-0
    position (so motion is visible), Lambert + specular shading and an alpha mask. Rendering
    is CPU ray casting with Intel Embree (embreex, through trimesh).
    """
    from rerf_codec.datasets.mesh_render import render_mesh_sequence

    with progress_bar(not as_json) as bar:
        report = render_mesh_sequence(
            mesh, output, cameras=cameras, test_cameras=test_cameras, size=size, frames=frames, step=step,
            force=force, supersample=supersample, progress=lambda done, total: bar.update("render", done, total),
        )
    if as_json:
        print_json(report)
        return
    click.echo(
        f"rendered {report['frames']} frames × {report['cameras']} cameras ({report['train_cameras']} train + "
        f"{report['test_cameras']} test) at {report['size']} px → {output}"
    )
    click.echo(
        f"  {report['seconds']:.1f} s, {report['views_per_second']:.0f} images/s; "
        f"{report['bytes_on_disk'] / 1e6:.2f} MB on disk ({report['bytes_per_frame'] / 1e3:.1f} kB/frame); "
        f"renderer {report['renderer']}"
    )


def _import_summary(kind: str, output: str, report: dict[str, Any]) -> None:
    w, h = report["size"]
    click.echo(
        f"imported {kind}: {report['num_frames']} frame(s) × {report['cameras']} cameras "
        f"({report['train']} train + {report['test']} test), {w}×{h} {report['image_mode']} at "
        f"{report['fps']:g} fps → {output}"
    )


@dataset.command("import-nerf")
@click.argument("src", metavar="DIR")
@click.option("-o", "--output", required=True, metavar="DATA", help="Output dataset directory (written atomically).")
@click.option("--test-split", default="test", show_default=True, type=click.Choice(["test", "val"]))
@click.option("--max-test", default=None, type=click.IntRange(1, 100_000), help="Keep at most N test views (spread).")
@click.option("--force", is_flag=True, help="Replace an existing dataset directory.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON report instead of the summary.")
def import_nerf_cmd(src: str, output: str, test_split: str, max_test: int | None, force: bool, as_json: bool) -> None:
    """Import a NeRF-synthetic scene (transforms_{train,test}.json + PNGs) as a one-frame dataset."""
    from rerf_codec.datasets.importers import import_nerf

    with progress_bar(not as_json) as bar:
        report = import_nerf(
            src, output, force=force, test_split=test_split, max_test=max_test,
            progress=lambda done, total: bar.update("import", done, total),
        )
    if as_json:
        print_json(report)
    else:
        _import_summary("NeRF-synthetic", output, report)


@dataset.command("import-rerf")
@click.argument("src", metavar="DIR")
@click.option("-o", "--output", required=True, metavar="DATA", help="Output dataset directory (written atomically).")
@click.option("--frames", "frames", type=FRAMES, default=None, help="Frames to import (half-open).")
@click.option("--test-cameras", default=None, type=click.IntRange(1, 4096), help="Held-out cameras (default 4).")
@click.option("--downscale", default=1, show_default=True, type=click.IntRange(1, 16), help="Shrink images by N.")
@click.option("--force", is_flag=True, help="Replace an existing dataset directory.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON report instead of the summary.")
def import_rerf_cmd(
    src: str, output: str, frames: FrameRange | None, test_cameras: int | None, downscale: int, force: bool,
    as_json: bool,
) -> None:
    """Import a ReRF/NHR capture: CamPose.inf, Intrinsic.inf, bbox.json, image/NNN.mp4 + mask/NNN.mp4."""
    from rerf_codec.datasets.importers import import_rerf

    with progress_bar(not as_json) as bar:
        report = import_rerf(
            src, output, force=force, frames=frames, test_cameras=test_cameras, downscale=downscale,
            progress=lambda done, total: bar.update("import", done, total),
        )
    if as_json:
        print_json(report)
    else:
        _import_summary("ReRF/NHR capture", output, report)


@dataset.command("demo")
@click.option("-o", "--output", required=True, metavar="DATA", help="Output dataset directory (written atomically).")
@click.option("--frames", "n_frames", default=30, show_default=True, type=click.IntRange(2, 10_000))
@click.option("--cameras", default=12, show_default=True, type=click.IntRange(1, 1024), help="Training cameras.")
@click.option("--test-cameras", default=2, show_default=True, type=click.IntRange(1, 1024), help="Held-out cameras.")
@click.option("--size", default=96, show_default=True, type=click.IntRange(8, 4096), help="Image size (pixels).")
@click.option("--seed", default=0, show_default=True, type=click.IntRange(0, 2**31 - 1))
@click.option("--quick", is_flag=True, help="A tiny version for tests and CI (8 frames, 4+1 cameras, 48 px).")
@click.option("--force", is_flag=True, help="Replace an existing dataset directory.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON report instead of the summary.")
def demo_cmd(
    output: str, n_frames: int, cameras: int, test_cameras: int, size: int, seed: int, quick: bool, force: bool,
    as_json: bool,
) -> None:
    """Render the built-in demo scene (no input files): two textured blobs that orbit, merge
    into one body and split again, plus a spinning bar; same renderer as from-mesh."""
    from rerf_codec.datasets.demo_scene import QUICK, render_demo_dataset

    settings: dict[str, Any] = dict(QUICK) if quick else {
        "frames": n_frames, "cameras": cameras, "test_cameras": test_cameras, "size": size,
    }
    with progress_bar(not as_json) as bar:
        report = render_demo_dataset(
            output, seed=seed, force=force, progress=lambda done, total: bar.update("render", done, total), **settings
        )
    if as_json:
        print_json(report)
        return
    keys = ", ".join(f"{k} {report[k]}" for k in ("frames", "cameras", "size") if k in report)
    click.echo(f"demo scene → {output} ({keys})")
