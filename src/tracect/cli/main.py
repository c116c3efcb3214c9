"""Entry point of the ``tracect`` command. Heavy imports happen inside each command's ``run``."""

from __future__ import annotations

import argparse
import sys

from tracect import __version__
from tracect.cli import autoencoder, bench, convert, demo, evaluate, generate, info, label, phantom, prepare, train

COMMANDS = (info, convert, phantom, label, prepare, autoencoder, train, generate, evaluate, demo, bench)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tracect", description="3D CT from a segmentation mask and a radiology report (TRACE).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--version", action="version", version=f"tracect {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMANDS:
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("tracect: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # expected failures carry a message a user can act on
        from tracect.cli.errors import USER_ERRORS

        if isinstance(e, USER_ERRORS):
            print(f"tracect {args.command}: {e}", file=sys.stderr)
            return getattr(e, "code", 1)
        raise


if __name__ == "__main__":
    sys.exit(main())
