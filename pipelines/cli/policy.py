"""`journeys policy check` and `publish`: a decision policy before it goes out, and into a running job."""
from __future__ import annotations

import sys


def add_commands(commands) -> None:
    policy = commands.add_parser("policy", help="decision policies (docs/policy.md)")
    policy_commands = policy.add_subparsers(dest="policy_command", required=True)
    check = policy_commands.add_parser("check", help="load a policy file and print what it says, or the error and its line")
    check.add_argument("file")
    check.add_argument("--ontology", help="the ontology to check against (default: the one the job config names)")
    check.add_argument("--strict", action="store_true", help="fail when a rule can never fire, not only warn")
    check.set_defaults(run=_policy_check)
    publish = policy_commands.add_parser("publish", help="check a policy file and put it into a running job's "
                                                        "watched policy-updates directory")
    publish.add_argument("file")
    publish.add_argument("--to", required=True, metavar="DIR", help="the job's --policy-updates directory")
    publish.add_argument("--canary", type=float, metavar="SHARE",
                         help="roll the version out as a canary for this share of people (0.05: 5%%), the policy in "
                              "force staying for the rest; 0 stops it; publishing it again without --canary promotes it")
    publish.set_defaults(run=_policy_publish)


def _policy_check(args) -> int:
    from journeys.yamlconf import ConfigError
    from pipelines.config import read_policy

    try:
        policy = read_policy(args.file)
    except ConfigError as error:
        print(f"journeys: {error}", file=sys.stderr)
        return 1
    print(f"policy {policy.name} version {policy.version}: priority = {' x '.join(policy.priority)}; "
          f"{len(policy.caps)} frequency caps, quiet hours {'on' if policy.quiet_hours else 'off'}, "
          f"{len(policy.eligibility)} eligibility rules, mandatory: {', '.join(sorted(policy.mandatory)) or 'none'}, "
          f"control group {policy.control_share:.0%}")
    warnings = _warnings(policy, args.ontology)
    return 1 if warnings and args.strict else 0


def _warnings(policy, ontology_path: str | None) -> list:
    """Print what in the policy can never fire, against the ontology the job would run with."""
    from journeys.policy_check import never_fire
    from pipelines.config import read_ontology, read_settings, settings_ontology

    ontology = read_ontology(ontology_path) if ontology_path else settings_ontology(read_settings())
    warnings = never_fire(policy, ontology)
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    return warnings


def _policy_publish(args) -> int:
    from pipelines.config import read_policy
    from pipelines.tools.policy_publish import publish
    from journeys.yamlconf import ConfigError

    try:
        if args.canary is not None and not 0 <= args.canary < 1:
            raise ConfigError(f"--canary is a share in [0, 1), not {args.canary}")
        written = publish(args.file, args.to, canary_share=args.canary)
    except ConfigError as error:
        print(f"journeys: not published: {error}", file=sys.stderr)
        return 1
    print(f"published {args.file} -> {written}")
    _warnings(read_policy(args.file), None)
    return 0
