"""``python -m facekp <command>``: results go to stdout, logs and errors to stderr.

Each command lives in its own module of this package with ``add_parser(subparsers)``
and ``run(args) -> int``. Modules import heavy libraries (torch) inside ``run`` so that
``--help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from facekp.errors import FacekpError

COMMANDS = ("convert", "inspect", "train", "evaluate", "submit", "predict", "gradcam")

log = logging.getLogger("facekp")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m facekp", description="Train, inspect and run facial keypoint models."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    parser.add_argument("-q", "--quiet", action="store_true", help="log only warnings and errors")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        module = importlib.import_module(f"facekp.cli.{name}")
        module.add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        # Building the parser imports every command's module, and some of them import torch.
        parser = build_parser()
    except KeyboardInterrupt:
        return 130
    args = parser.parse_args(argv)
    level = logging.INFO
    if args.verbose:
        level = logging.DEBUG
    elif args.quiet:
        level = logging.WARNING
    logging.basicConfig(
        level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    try:
        return args.run(args)
    except FacekpError as error:
        log.error("%s", error)
        return 2
    except KeyboardInterrupt:
        log.error("interrupted")
        return 130
