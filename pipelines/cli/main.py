"""The `journeys` command: simulate signals, import third-party clickstreams, convert Avro
archives, prepare feature-store data and training sets, replay archives with Apache Beam, train
and promote the stage models, check and publish policies, and show what a run did."""
from __future__ import annotations

import argparse
import sys

from pipelines.cli import canary, features, policy, reports, tools


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="journeys", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    tools.add_commands(commands)
    features.add_commands(commands)
    replay = commands.add_parser("replay", help="replay an archive of signals with Apache Beam: journeys, sessions, "
                                                "decisions, offline features, training sets (parquet)")
    from pipelines.cli.replay import add_arguments

    add_arguments(replay)
    models = commands.add_parser("models", help="stage models in MLflow: train, register, promote, roll back")
    from models.cli import add_arguments as add_model_arguments

    add_model_arguments(models)
    policy.add_commands(commands)
    reports.add_commands(commands)
    canary.add_commands(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    from pipelines.quiet import hush_third_party_warnings

    hush_third_party_warnings()
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["replay"]:  # Beam's own options pass through, so its arguments are parsed there
        from pipelines.cli.replay import main as replay

        return _guarded(replay, argv[1:])
    args = build_parser().parse_args(argv)
    return _guarded(args.run, args)


def _guarded(command, arguments) -> int:
    try:
        return command(arguments)
    except (ValueError, FileNotFoundError) as error:  # bad input: say what, no traceback
        print(f"journeys: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
