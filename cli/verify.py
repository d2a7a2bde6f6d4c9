"""``rerf verify``: decode streams with the Python and/or the JavaScript decoder and compare
their decoded-grid SHA-256 (FORMAT.md §11). Thin CLI layer over
:mod:`rerf_codec.web.verify`."""

from __future__ import annotations

import click

from cli.common import print_json
from rerf_codec.web.verify import DECODERS, verify_streams


@click.command("verify")
@click.argument("streams", nargs=-1, required=True, metavar="STREAM...")
@click.option("--decoder", "decoder", type=click.Choice(["python", "js", "both"]), default="both", show_default=True,
              help="Which decoders to run (js runs under Node.js 20+).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document instead of text.")
def verify(streams: tuple[str, ...], decoder: str, as_json: bool) -> int:
    """Decode each STREAM and print every decoder's SHA-256 and frames/s.

    Exit status: 0 when the decoders agree on every stream, 1 when they disagree,
    2 when a stream is invalid for every decoder, or Node.js is missing for --decoder js/both.
    """
    report = verify_streams(list(streams), DECODERS[decoder])
    if as_json:
        print_json(report)
    else:
        for s in report["streams"]:
            click.echo(f"{s['path']}")
            for name, r in s["decoders"].items():
                if "error" in r:
                    click.echo(f"  {name:<7} error: {r['error']['message']}")
                else:
                    click.echo(f"  {name:<7} sha256 {r['sha256']}  {r['frames']} frames  {r['frames_per_s']:.2f} frames/s")
            click.echo(f"  {s['verdict']}")
        click.echo(f"{len(report['streams'])} stream(s): {report['verdict']}")
    return int(report["exit_code"])
