"""``rerf export-web``: the player and one stream as a static folder.

The folder is what ``rerf play`` serves, as files: ``index.html`` and the app's modules,
the stream (under its own name), ``player.json`` (which stream and cameras the page
opens) and, with a dataset, ``cameras.json``. Any static host that answers Range
requests serves it as is; the stream may also live on another origin — point
``player.json``'s ``src`` (or the page's ``?src=``) at it and send the CORS headers
the README lists.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rerf_codec.atomic import AtomicDirectory
from rerf_codec.web.server import WEB_ROOT, app_files, check_stream, player_config

MARKER = "player.json"


class _SiteWriter(AtomicDirectory):
    MARKER = MARKER
    KIND = "rerf web export"


@dataclass
class ExportReport:
    out_dir: str
    stream: str
    stream_bytes: int
    app_files: int
    app_bytes: int
    cameras: int

    def to_json(self) -> dict[str, Any]:
        return {
            "out_dir": self.out_dir, "stream": self.stream, "stream_bytes": self.stream_bytes,
            "app_files": self.app_files, "app_bytes": self.app_bytes, "cameras": self.cameras,
            "index": str(Path(self.out_dir) / "index.html"),
        }  # fmt: skip


def export_site(
    stream: str | Path,
    out_dir: str | Path,
    *,
    cameras: list[dict[str, Any]] | None = None,
    force: bool = False,
    app_root: Path = WEB_ROOT,
) -> ExportReport:
    """Write the static player site for ``stream`` into ``out_dir`` (atomically; ``force`` to replace)."""
    src = check_stream(stream)
    name = src.name if src.suffix == ".rerf" else src.name + ".rerf"
    files = app_files(app_root)
    app_bytes = 0
    with _SiteWriter(out_dir, force=force) as w:
        tmp = w._tmp
        for url, path in files.items():
            dest = tmp / url.lstrip("/")
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, dest)
            app_bytes += dest.stat().st_size
        if name in {u.lstrip("/") for u in files} or name in (MARKER, "cameras.json"):
            name = "stream.rerf"
        shutil.copyfile(src, tmp / name)
        cams_url = None
        if cameras is not None:
            cams_url = "cameras.json"
            (tmp / cams_url).write_text(json.dumps({"cameras": cameras}))
        config = player_config(name, src.name, cams_url)
        (tmp / MARKER).write_text(json.dumps(config, indent=2) + "\n")
    return ExportReport(str(out_dir), name, (Path(out_dir) / name).stat().st_size, len(files), app_bytes,
                        len(cameras or []))  # fmt: skip
