"""The ``grpolab`` command line."""

from __future__ import annotations

import argparse
import sys


def _algorithms(args: argparse.Namespace) -> int:
    from grpolab.algorithms import catalogue

    if args.markdown:
        text = catalogue.methods_markdown()
    elif args.parts:
        text = catalogue.parts_table()
    else:
        text = catalogue.presets_table()
    sys.stdout.write(text)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="grpolab", description="GRPO-family RL post-training as composable parts.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    algorithms = sub.add_parser("algorithms", help="list presets with their slot parts and papers")
    view = algorithms.add_mutually_exclusive_group()
    view.add_argument("--parts", action="store_true", help="list every registered core part by slot instead")
    view.add_argument("--markdown", action="store_true", help="print docs/methods.md (presets and parts)")
    algorithms.set_defaults(run=_algorithms)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    raise SystemExit(main())
