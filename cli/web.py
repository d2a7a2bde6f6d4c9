"""``rerf play`` and ``rerf export-web``: the browser player, served or exported.

Thin layer: the server and the export are in ``rerf_codec.web``.
"""

from __future__ import annotations

import contextlib
import sys
import threading

import click

from cli.common import print_json


@click.command()
@click.argument("input_path", metavar="IN.rerf")
@click.option("--dataset", "dataset", default=None, metavar="DATA",
              help="Offer DATA's cameras (transforms.json) as view presets in the player.")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on. Anything but a loopback address exposes the stream to the network.")
@click.option("--port", type=click.IntRange(0, 65535), default=0, show_default=True, help="Port (0: a free one).")
@click.option("--no-open", is_flag=True, help="Do not open a browser.")
@click.option("--verbose", is_flag=True, help="Log every request (method, path, status, bytes, range) on stderr.")
@click.option("--json", "as_json", is_flag=True,
              help="Print one JSON document (url, host, port, stream) on stdout once listening.")
def play(input_path: str, dataset: str | None, host: str, port: int, no_open: bool, verbose: bool,
         as_json: bool) -> None:  # fmt: skip
    """Serve the browser player for IN.rerf and open it (Ctrl-C stops the server).

    The server answers HTTP Range requests (the player fetches the index, then only the
    GOFs it plays or seeks to) and serves nothing but the app and this stream.
    """
    from rerf_codec.web.server import PlayServer, SiteFiles, dataset_cameras, is_loopback

    cams = dataset_cameras(dataset) if dataset is not None else None
    site = SiteFiles(input_path, cameras=cams)
    server = PlayServer(site, host, port, log=sys.stderr if verbose else None)
    url = server.url
    info = {"url": url, "host": server.server_address[0], "port": server.server_address[1],
            "stream": str(site.stream), "stream_bytes": site.stream.stat().st_size,
            "cameras": len(cams or []), "loopback": is_loopback(host)}  # fmt: skip
    if as_json:
        print_json(info)
    else:
        click.echo(f"rerf play: serving {site.stream} at {url}  (Ctrl-C to stop)")
    if not is_loopback(host):
        click.echo(f"rerf: warning: listening on {host}: other machines can fetch this stream", err=True)
    sys.stdout.flush()
    if not no_open:
        import webbrowser

        threading.Thread(target=webbrowser.open, args=(url,), daemon=True).start()
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        if not as_json:
            click.echo("rerf play: stopped")
    finally:
        with contextlib.suppress(Exception):
            server.server_close()


@click.command("export-web")
@click.argument("input_path", metavar="IN.rerf")
@click.option("-o", "--output", required=True, metavar="SITE", help="Folder to create (index.html, app, stream).")
@click.option("--dataset", "dataset", default=None, metavar="DATA", help="Include DATA's cameras as view presets.")
@click.option("--force", is_flag=True, help="Replace an existing export.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON report on stdout.")
def export_web(input_path: str, output: str, dataset: str | None, force: bool, as_json: bool) -> None:
    """Write the player and IN.rerf as a static site any Range-capable web server can host.

    Open SITE/index.html through a web server (not file://); ?src=URL plays another
    stream, also from another origin if that host sends CORS headers (see README).
    """
    from rerf_codec.web.export import export_site
    from rerf_codec.web.server import dataset_cameras

    cams = dataset_cameras(dataset) if dataset is not None else None
    rep = export_site(input_path, output, cameras=cams, force=force)
    if as_json:
        print_json(rep.to_json())
        return
    click.echo(f"exported the player → {output}/ ({rep.app_files} app files, {rep.app_bytes:,} bytes; "
               f"stream {rep.stream} {rep.stream_bytes:,} bytes; {rep.cameras} cameras)")  # fmt: skip
    click.echo(f"  serve it with any Range-capable server, e.g. `rerf play {input_path}` or nginx (README)")
