"""Command line: `python -m datamover local ...`, `... vsi ...` and `... export ...`."""

import argparse
import os
from collections.abc import Sequence
from typing import Optional

from datamover.engine import default_jobs
from datamover.layout import LAYOUTS


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="datamover", description="Convert the gzip'd volume objects of an image into its data volume and qcow2."
    )
    sub = parser.add_subparsers(dest="mode", required=True)
    local = sub.add_parser("local", help="object directory -> OUT/<image>-data.img, OUT/<image>.qcow2")
    local.add_argument("--objects", required=True, help="directory holding image-metadata.json, devmap, volumes")
    local.add_argument("--out", required=True, help="output directory")
    local.add_argument("--layout", choices=LAYOUTS, default="all-in-data")
    local.add_argument("--image", help="image name, when image-metadata.json has none (the reference builder's)")
    vsi = sub.add_parser("vsi", help="run on the mover VSI from a mover configuration")
    source = vsi.add_mutually_exclusive_group(required=True)
    source.add_argument("--config-url", help="URL of the mover configuration (JSON)")
    source.add_argument("--config", help="file holding the mover configuration")
    vsi.add_argument("--workdir", default="/var/lib/zimage-mover", help="where the volumes are mounted")
    export = sub.add_parser("export", help="on an export VSI: gzip and upload the volumes of an attached data volume")
    exported = export.add_mutually_exclusive_group(required=True)
    exported.add_argument("--config-url", help="URL of the export configuration (JSON)")
    exported.add_argument("--config", help="file holding the export configuration")
    export.add_argument("--workdir", default="/var/lib/zimage-mover", help="where the data volume is mounted")
    export.add_argument("--jobs", type=int, default=None, help="volumes in parallel (default: the configuration's)")
    export.add_argument("--progress-every", type=float, default=5.0, help="seconds between progress lines")
    host = sub.add_parser("host", help="on an emulator host: probe it or deploy a set (a JSON job on stdin)")
    host.add_argument("--job", help="read the job from this file instead of stdin")
    lookup = sub.add_parser("lookup", help="where the volumes lie: data sets and members of volume images (JSON)")
    lookup.add_argument("--request", required=True, help="file holding the request (JSON)")
    lookup.add_argument("--out", help="write the answer to this file instead of stdout")
    for mode in (local, vsi):
        mode.add_argument("--jobs", type=int, default=None, help=f"volumes in parallel (default {default_jobs()})")
        mode.add_argument("--retries", type=int, default=None, help="attempts after the first for a failed volume")
        mode.add_argument("--retry-delay", type=float, default=None, help="seconds before a retry")
        mode.add_argument("--progress-every", type=float, default=5.0, help="seconds between progress lines")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = _parser().parse_args(argv)
    if args.mode == "host":
        from datamover.host import run_host

        return run_host(args.job)
    if args.mode == "lookup":
        from datamover.lookup import run_lookup

        return run_lookup(args.request, args.out)
    if args.mode == "local":
        from datamover.local import run_local

        return run_local(
            os.path.abspath(args.objects), os.path.abspath(args.out), args.jobs or default_jobs(), args.layout,
            2 if args.retries is None else args.retries, 5.0 if args.retry_delay is None else args.retry_delay,
            args.progress_every, args.image,
        )
    if args.mode == "export":
        from datamover.export import run_export

        return run_export(args.config_url, args.config, args.workdir, args.jobs, args.progress_every)
    from datamover.vsi import run_vsi

    return run_vsi(args.config_url, args.config, args.workdir, args.jobs, args.retries, args.retry_delay,
                   args.progress_every)
