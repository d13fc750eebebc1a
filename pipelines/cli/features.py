"""`journeys features ...`: the Feast repository's tables, its offline history, training sets."""
from __future__ import annotations



def add_commands(commands) -> None:
    features = commands.add_parser("features", help="feature-store data: init the repository's tables, push offline history, build training sets")
    feature_commands = features.add_subparsers(dest="features_command", required=True)
    init = feature_commands.add_parser("init", help="create the empty tables `feast materialize` expects (push history)")
    init.add_argument("--repo", default="features", help="the Feast repository (default: features)")
    init.set_defaults(run=_features_init)
    training = feature_commands.add_parser("training-set", help="point-in-time training frames with get_historical_features")
    training.add_argument("--entities", required=True, help="parquet or CSV with customer_id and event_timestamp")
    training.add_argument("--out", required=True, help="the parquet file to write")
    training.add_argument("--repo", default="features")
    training.add_argument("--feature-store-yaml", help="another feature_store.yaml, e.g. the Redis profile")
    training.add_argument("--service", default="journey_agent_v1", help="the feature service to use")
    training.set_defaults(run=_features_training_set)
    offline = feature_commands.add_parser("push-offline", help="push the feature rows a job wrote (--feature-rows) "
                                                               "to the offline store, each file once")
    offline.add_argument("--rows", required=True, help="the job's --feature-rows directory")
    offline.add_argument("--repo", default="features")
    offline.add_argument("--feature-store-yaml", help="another feature_store.yaml, e.g. the Redis profile")
    offline.set_defaults(run=_features_push_offline)


def _features_init(args) -> int:
    from pipelines.feast.store import init_repo_data

    created = init_repo_data(args.repo)
    print("created " + ", ".join(str(p) for p in created) if created else f"{args.repo}: nothing to create")
    return 0


def _features_training_set(args) -> int:
    from pipelines.feast.store import training_set

    rows = training_set(args.repo, args.entities, args.out, args.service, args.feature_store_yaml)
    print(f"training set of {rows:,} rows with the features of {args.service} as of each row's timestamp -> {args.out}")
    return 0


def _features_push_offline(args) -> int:
    from pipelines.feast.store import push_offline

    pushed = push_offline(args.repo, args.rows, args.feature_store_yaml)
    print(f"pushed {pushed.rows:,} feature rows from {pushed.files:,} new file{'' if pushed.files == 1 else 's'} in {args.rows} "
          f"to the offline store of {args.repo}")
    return 0
