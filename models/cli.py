"""`journeys models ...`: train, register, promote, roll out as a canary and roll back the stage models."""
from __future__ import annotations

import argparse

from journeys.scoring import KIND_TAG, MODEL_KINDS


def add_arguments(models: argparse.ArgumentParser) -> None:
    commands = models.add_subparsers(dest="models_command", required=True)

    def command(name: str, help: str) -> argparse.ArgumentParser:
        parser = commands.add_parser(name, help=help)
        parser.add_argument("--tracking-uri", help="MLflow tracking and registry URI (default: $MLFLOW_TRACKING_URI, "
                                                   "else sqlite under var/mlflow)")
        return parser

    train = command("train", "fit a model on a training set, evaluate it on held-back customers, log it to MLflow")
    train.add_argument("--kind", choices=MODEL_KINDS, required=True)
    train.add_argument("--training-set", required=True, help="journeys replay --emit training-set output (parquet)")
    train.add_argument("--truth", help="signals with ground truth (journeys simulate output); the journey_stage "
                                       "model's labels")
    train.add_argument("--held-back", type=float, default=0.2, help="share of customers held back for evaluation")
    train.add_argument("--regularization", type=float, default=1.0, help="inverse regularization strength C")
    train.add_argument("--experiment", default="journey-agents")
    train.add_argument("--register", metavar="NAME", help="also register the model under this name")
    train.add_argument("--promote", choices=("champion", "challenger"),
                       help="and point this alias at it (a champion promotion is gated; a refusal keeps the champion "
                            "and is not an error)")
    train.add_argument("--reuse", action="store_true", help="skip training when NAME@ALIAS (--promote's, else champion) "
                                                            "is a model of this kind trained on the same training set")
    train.set_defaults(run=_train)

    register = command("register", "register a trained run's model as a new version")
    register.add_argument("run_id")
    register.add_argument("--name", required=True)
    register.set_defaults(run=_register)

    promote = command("promote", "point the champion or challenger alias at a version")
    promote.add_argument("name")
    promote.add_argument("version")
    promote.add_argument("--alias", choices=("champion", "challenger"), required=True)
    promote.add_argument("--force", action="store_true", help="promote a champion even when its held-back metric "
                                                              "is worse than the current champion's")
    promote.set_defaults(run=_promote)

    rollback = command("rollback", "move champion back to the version that held it before")
    rollback.add_argument("name")
    rollback.set_defaults(run=_rollback)

    canary = command("canary", "roll a version out as a canary: it scores in its champion's place for a share of "
                               "people (`journeys canary status --model NAME` judges it, `promote` makes it champion)")
    canary.add_argument("name")
    canary.add_argument("version", nargs="?", help="the version to roll out (not with --stop)")
    canary.add_argument("--share", type=float, help="its share of people, in (0, 1), kept as the version's "
                                                    "journeys.canary_share tag (default: the job's models.canary_share)")
    canary.add_argument("--stop", action="store_true", help="take the canary alias away")
    canary.set_defaults(run=_canary)

    compare = commands.add_parser("compare", help="champion against challenger on the decisions a job logged: "
                                                   "agreement, and each one's accuracy against what happened")
    compare.add_argument("--decisions", required=True, help="the job's decisions (a file or directory of JSON lines)")
    compare.add_argument("--journeys", help="the job's journey log: conversions observed after each decision")
    compare.add_argument("--truth", help="signals with ground truth (journeys simulate output): the real stages")
    compare.add_argument("--horizon", default="7d", help="how long after a decision a conversion counts")
    compare.add_argument("--json", metavar="PATH", help="also write the report as JSON")
    compare.set_defaults(run=_compare)


def _client(args):
    from models.registry import client_for, tracking_uri

    return client_for(tracking_uri(args.tracking_uri))


def _train(args) -> int:
    from models.registry import PromotionRefused, alias_trained_on, promote, register, tracking_uri, train_and_log

    import warnings

    # Harmless here: the training set's integer columns are counts with no missing values, and
    # its parquet source is a local file either way.
    warnings.filterwarnings("ignore", message="Hint: Inferred schema contains integer column", category=UserWarning)
    warnings.filterwarnings("ignore", message="The specified dataset source can be interpreted", category=UserWarning)
    uri = tracking_uri(args.tracking_uri)
    if (args.reuse or args.promote) and not args.register:
        print("journeys: --reuse and --promote need --register NAME")
        return 2
    if args.reuse:
        alias = args.promote or "champion"
        reused = alias_trained_on(_client(args), args.register, alias, args.training_set, args.kind)
        if reused is not None:
            print(f"reusing {args.register}@{alias} version {reused}: trained on this training set already")
            return 0
    trained = train_and_log(args.kind, args.training_set, args.truth, uri=uri, experiment=args.experiment,
                            held_back_share=args.held_back, regularization=args.regularization)
    figures = ", ".join(f"{name} {value:.4f}" if isinstance(value, float) else f"{name} {value:,}"
                        for name, value in trained.metrics.items())
    print(f"trained {trained.kind}: run {trained.run_id}; on held-back customers: {figures}")
    if args.register:
        version = register(_client(args), trained.run_id, args.register)
        print(f"registered {args.register} version {version}")
        if args.promote:
            try:
                done = promote(_client(args), args.register, version, args.promote)
            except PromotionRefused as refused:
                print(f"not promoted: {refused}")
                return 0
            print(f"{args.register}@{args.promote} -> version {version}" + (f" (was {done.previous})" if done.previous else " (first)"))
    return 0


def _register(args) -> int:
    from models.registry import register

    client = _client(args)
    print(f"registered {args.name} version {register(client, args.run_id, args.name)}")
    return 0


def _promote(args) -> int:
    from models.evaluate import PRIMARY_METRIC
    from models.registry import PromotionRefused, promote

    client = _client(args)
    try:
        done = promote(client, args.name, args.version, args.alias, force=args.force)
    except PromotionRefused as refused:
        print(f"journeys: {refused}")
        return 1
    line = f"{args.name}@{args.alias} -> version {done.version}"
    line += f" (was {done.previous})" if done.previous else " (first)"
    if done.candidate_metrics is not None:
        kind = client.get_model_version(args.name, done.version).tags[KIND_TAG]
        metric = PRIMARY_METRIC[kind]
        line += (f"; {metric} on the candidate's held-back customers: {done.candidate_metrics[metric]:.4f} against "
                 f"{done.champion_metrics[metric]:.4f}" + (" (forced)" if done.forced else ""))
    print(line)
    return 0


def _canary(args) -> int:
    from models.registry import start_canary, stop_canary

    if args.stop == (args.version is not None):
        print("journeys: give a VERSION to roll out, or --stop")
        return 2
    client = _client(args)
    if args.stop:
        stopped = stop_canary(client, args.name)
        print(f"{args.name}@canary removed (was version {stopped}): the champion scores for everyone"
              if stopped else f"{args.name} has no canary")
        return 0
    try:
        previous = start_canary(client, args.name, args.version, args.share)
    except ValueError as error:
        print(f"journeys: {error}")
        return 1
    share = f"{args.share:.0%} of people" if args.share is not None else "the job's models.canary_share of people"
    print(f"{args.name}@canary -> version {args.version}" + (f" (was {previous})" if previous else "")
          + f": it scores in its champion's place for {share}")
    return 0


def _rollback(args) -> int:
    from models.registry import rollback

    client = _client(args)
    done = rollback(client, args.name)
    print(f"{args.name}@champion -> version {done.version} (rolled back from {done.previous})")
    return 0


def _compare(args) -> int:
    import json
    from pathlib import Path

    from pipelines.reports.model_comparison import compare_models, format_comparison
    from pipelines.reports.summary import read_records, read_truth
    from journeys.timeutil import parse_duration

    report = compare_models(read_records(args.decisions), read_truth(args.truth) if args.truth else None,
                            read_records(args.journeys) if args.journeys else None, parse_duration(args.horizon))
    print(format_comparison(report))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return 0
