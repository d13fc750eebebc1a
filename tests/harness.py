"""The shared test harness: named times, signal builders, ways to play signals through the core,
scorers that answer from a table, and the helpers that run the job's driver. Test modules import
from here, never from each other."""
from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from journeys.features import ONLINE, PROFILE_DEFAULTS, ProfileLookup
from journeys.ontology import packaged_ontology
from journeys.outputs import Decision, JourneyLog, LogKind
from journeys.policy import packaged_policy
from journeys.policy_updates import PolicyInForce
from journeys.scoring import PROPENSITY_MODEL, STAGE_MODEL, ActiveModels, ModelScore
from journeys.settings import packaged_settings
from journeys.timeutil import DAY, HOUR, MINUTE, SECOND, parse_instant
from journeys.transitions import Transitions
from pipelines.reference import ReferenceRun
from pipelines.reports.summary import read_records
from pipelines.tools.files import read_lines

BEGINNING = parse_instant("2026-03-02T09:00:00Z")
TEN_SECONDS_LATER = BEGINNING + 10 * SECOND
ONE_MINUTE_LATER = BEGINNING + MINUTE
TWO_MINUTES_LATER = BEGINNING + 2 * MINUTE
FIVE_MINUTES_LATER = BEGINNING + 5 * MINUTE
TEN_MINUTES_LATER = BEGINNING + 10 * MINUTE
AN_HOUR_LATER = BEGINNING + HOUR
TWO_HOURS_LATER = BEGINNING + 2 * HOUR
A_DAY_LATER = BEGINNING + DAY
FOUR_DAYS_LATER = BEGINNING + 4 * DAY
A_WEEK_LATER = BEGINNING + 7 * DAY
EIGHT_DAYS_LATER = BEGINNING + 8 * DAY
A_MONTH_LATER = BEGINNING + 31 * DAY
FAR_LATER = BEGINNING + 120 * DAY
# The intake clock of tests: later than every named time, so none of them is "in the future".
NOW = BEGINNING + 365 * DAY

_ids = itertools.count(1)


def a_signal(event_type: str = "page_view", at: int = BEGINNING, *, customer: str | None = None,
             visitor: str | None = None, channel: str = "web", event_id: str | None = None,
             session_hint: str | None = None, **attributes) -> dict:
    """A normalized signal. Without customer or visitor, it belongs to customer c-1."""
    if customer is None and visitor is None:
        customer = "c-1"
    return {
        "event_id": event_id or f"{event_type}-{next(_ids)}",
        "event_time": at, "channel": channel, "event_type": event_type,
        "customer_id": customer, "anonymous_id": visitor, "session_hint": session_hint,
        "attributes": {key: str(value) for key, value in attributes.items()},
        "schema_version": 2, "timezone": "UTC",
    }


def a_login(visitor: str, customer: str, at: int, **kwargs) -> dict:
    return a_signal("login", at, customer=customer, visitor=visitor, **kwargs)


def line(signal: dict) -> bytes:
    return orjson.dumps(signal)


def play(signals: list[dict], *, end_clock: int | None = None, ontology=None, settings=None, models=None) -> ReferenceRun:
    """Deliver the signals in the given order through intake and both keyed roles, then end the input."""
    run = ReferenceRun(ontology or packaged_ontology(), settings or packaged_settings(), end_clock=end_clock, now_ms=NOW,
                       models=models)
    return run.feed(line(s) for s in signals).finish()


def a_core(profiles=None, *, models=None, push_features: bool = False, clock=time.perf_counter, policy=None,
           ontology=None, settings=None) -> Transitions:
    """The journey transitions with the packaged ontology, settings and retail policy."""
    in_force = policy if isinstance(policy, PolicyInForce) else PolicyInForce(policy or packaged_policy())
    return Transitions(ontology or packaged_ontology(), settings or packaged_settings(), in_force, clock, profiles,
                       models, push_features)


def decisions_in(out: list, acted_only: bool = True) -> list[dict]:
    """The decision records among a call's outputs: those acted on, or all of them."""
    return [entry.record for entry in out if isinstance(entry, Decision) and (entry.record["acted"] or not acted_only)]


def journey_records_in(out: list, kind: str | None = None) -> list[dict]:
    """The journey log records among a call's outputs, of one kind or all."""
    return [entry.record for entry in out if isinstance(entry, JourneyLog) and (kind is None or entry.record["kind"] == kind)]


def records(run: ReferenceRun, kind: str | None = None, journey: str | None = None) -> list[dict]:
    return [r for r in run.journey_records
            if (kind is None or r["kind"] == kind) and (journey is None or r["journey"] == journey)]


def stages_of(run: ReferenceRun, journey: str) -> list[str]:
    """The stage after each applied signal of one journey, in event-time order."""
    applied = sorted(records(run, LogKind.SIGNAL, journey), key=lambda r: (r["at"], r["event_id"]))
    return [r["stage"] for r in applied]


def profiles_of(archive: Path) -> Path:
    """The profile parquet written beside a simulated archive (see the archive fixture)."""
    return archive.with_name("profiles.parquet")


def canonical(items: list[dict], drop: tuple[str, ...] = ("latency_ms", "decision_us")) -> list[bytes]:
    """Records as sorted, key-ordered JSON, for comparing runs regardless of output order."""
    return sorted(orjson.dumps({k: v for k, v in item.items() if k not in drop}, option=orjson.OPT_SORT_KEYS)
                  for item in items)


def a_decision_point(customer: str = "c-1", at: int = BEGINNING, *, stage: str = "consideration",
                     trigger: str = "stage_entered", cart_value: float = 0.0, events_last_hour: int = 1,
                     events_last_day: int = 3, support_contacts_7d: int = 0, last_channel: str = "web",
                     converted: bool = False, label_complete: bool = True, last_event_id: str | None = None,
                     **profile) -> dict:
    """A row of a replay's training set (journeys replay --emit training-set)."""
    return {"customer_id": customer, "event_timestamp": at, "decision_id": f"d-{customer}-{at}", "stage": stage,
            "trigger": trigger, "action": "send_reminder", "channel": "email",
            "last_event_id": last_event_id or f"e-{customer}-{at}",
            "events_last_hour": events_last_hour, "events_last_day": events_last_day, "cart_value": cart_value,
            "last_channel": last_channel, "support_contacts_7d": support_contacts_7d,
            "lifetime_value": profile.get("lifetime_value"), "segment": profile.get("segment"),
            "tenure_days": profile.get("tenure_days"), "preferred_channel": profile.get("preferred_channel"),
            "converted": converted, "churned": False, "escalated": False, "label_horizon_ms": 7 * DAY,
            "label_complete": label_complete}


def decision_points_with_a_pattern(customers: int = 400, seed: int = 11) -> tuple[list[dict], dict[str, str]]:
    """Training rows where the rules say `consideration` but a customer with a cart is really in
    `intent`, and carts over 60 convert (1 in 20 labels flipped), with the ground truth by event id."""
    import random

    rng = random.Random(seed)
    rows, truth = [], {}
    for index in range(customers):
        for point in range(3):
            cart = rng.choice([0.0, 0.0, rng.uniform(5, 50), rng.uniform(61, 200)])
            converted = (cart > 60) != (rng.random() < 0.05)
            row = a_decision_point(f"c-{index}", BEGINNING + point * HOUR, cart_value=round(cart, 2), converted=converted,
                                   events_last_hour=rng.randint(1, 6), segment=rng.choice(["new", "regular", "vip"]))
            rows.append(row)
            truth[row["last_event_id"]] = "intent" if cart > 0 else "consideration"
    return rows, truth


class EveryoneConsents:
    """A feature store in which every customer has a default profile and consents to every channel."""

    CONSENTS = {"consent_email": True, "consent_sms": True, "consent_push": True, "tenure_days": 400}

    def profile(self, customer_id: str) -> ProfileLookup:
        return ProfileLookup(dict(PROFILE_DEFAULTS) | self.CONSENTS, ONLINE)


# -- stage models that answer from a table -------------------------------------------------------
class TableScorer:
    """Answers `answer(row)` for each row, and records the size of every batch it was given."""

    def __init__(self, name: str, version: str, answer):
        self.name, self.version, self.answer = name, version, answer
        self.batches: list[int] = []

    def score(self, rows):
        self.batches.append(len(rows))
        return [ModelScore(self.name, self.version, *self.answer(row)) for row in rows]


class Fixed:
    def __init__(self, models: ActiveModels):
        self.models = models

    def active(self) -> ActiveModels:
        return self.models


def stage_model(say: str, probability: float, version: str = "3") -> TableScorer:
    return TableScorer(STAGE_MODEL, version, lambda row: (say, probability))


def propensity(probability: float, version: str = "2") -> TableScorer:
    return TableScorer(PROPENSITY_MODEL, version, lambda row: ("converts" if probability >= 0.5 else "does_not_convert",
                                                               probability))


# -- the journey map's three customers -----------------------------------------------------------
STAGES = packaged_ontology().stage_ids


def three_customers():
    """c-1 browses, carts and buys; c-3 carts and leaves; visitor v-1 browses twice, logs in as c-4."""
    signals = [a_signal("product_view", BEGINNING, customer="c-1"), a_signal("product_view", ONE_MINUTE_LATER, customer="c-1"),
               a_signal("add_to_cart", TWO_MINUTES_LATER, customer="c-1", cart_value=20),
               a_signal("purchase", TEN_MINUTES_LATER, customer="c-1"),
               a_signal("add_to_cart", BEGINNING, customer="c-3", cart_value=50, channel="app"),
               a_signal("product_view", BEGINNING, visitor="v-1"), a_signal("search", ONE_MINUTE_LATER, visitor="v-1"),
               a_login("v-1", "c-4", TWO_MINUTES_LATER)]
    run = ReferenceRun(packaged_ontology(), packaged_settings(), end_clock=A_DAY_LATER, profiles=EveryoneConsents(),
                       now_ms=BEGINNING + 400 * 86_400_000)
    return run.feed(line(s) for s in sorted(signals, key=lambda s: s["event_time"])).finish()


# -- a third-party clickstream for journeys import --------------------------------------------------
CLICKS_CSV = """user_id,item_id,category_id,behavior,ts,session_id
1,2268318,2520377,pv,1511544070,s1
1,2333346,2520771,buy,1511561733,s1
,1,2,pv,1511561733,
2,3,4,cart,notatime,s2
3,5,6,fav,1511561999,NA
4,7,"8,9",pv,1511562000,s4
5,1,2
"""


MAPPING = """
format: {format}
{extra}
fields:
  customer_id: user_id
  anonymous_id: session_id
  event_type: behavior
  event_time: {{column: ts, format: {time_format}}}
  channel: {{value: web}}
  attributes: [item_id, category_id]
values:
  event_type: {{pv: page_view, buy: purchase, cart: add_to_cart}}
null_values: ["", "NA"]
"""


def run_import(tmp_path, content: str, fmt: str = "csv", time_format: str = "unix_seconds", extra: str = "",
               options: tuple[str, ...] = ()):
    source = tmp_path / f"clicks.{fmt}"
    source.write_text(content)
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text(MAPPING.format(format=fmt, time_format=time_format, extra=extra))
    out = tmp_path / "signals.jsonl"
    from pipelines.cli.main import main as journeys_cli

    assert journeys_cli(["import", "--mapping", str(mapping), *options, str(source), str(out)]) == 0
    signals = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    dead = [orjson.loads(line) for line in (tmp_path / "signals.dead-letter.jsonl").read_bytes().splitlines()]
    return signals, dead


# -- running the job's driver ------------------------------------------------------------------
ROOT = Path(__file__).resolve().parents[1]


def job_arguments(signals: Path, out: Path, *extra: str) -> list[str]:
    return ["--signals", signals.as_uri(), "--decisions", (out / "decisions").as_uri(),
            "--journeys", (out / "journeys").as_uri(), "--dead-letter", (out / "dead-letter").as_uri(),
            "--summary", str(out / "summary.json"), "--checkpoints", str(out / "checkpoints"), *extra]


def job_output(out: Path) -> dict:
    return {name: list(read_records(out / name)) for name in ("journeys", "decisions", "dead-letter")}


def reference_output(signals: Path, end_clock: int | None) -> ReferenceRun:
    return ReferenceRun(packaged_ontology(), packaged_settings(), end_clock=end_clock).feed(read_lines(signals)).finish()


def start_driver(arguments: list[str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(ROOT / "jobs" / "journey_job.py"), *arguments], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)


def wait_for_checkpoints(directory: Path, count: int, process: subprocess.Popen, timeout: float = 120) -> Path:
    deadline = time.time() + timeout
    while time.time() < deadline:
        done = sorted(directory.glob("*/chk-*/_metadata"), key=lambda p: int(p.parent.name.split("-")[1]))
        if len(done) >= count:
            return done[-1].parent
        if process.poll() is not None:
            pytest.fail(f"the job ended before {count} checkpoints completed:\n{process.stdout.read()[-3000:]}")
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    pytest.fail(f"no {count} completed checkpoints in {directory} after {timeout} s")


def kafka_arguments(bootstrap, topics, stop_offsets, summary, *extra, fmt=""):
    suffix = f"?format={fmt}" if fmt else ""
    return ["--signals", f"kafka://{bootstrap}/{topics['signals']}{suffix}", "--stop-offsets", stop_offsets,
            "--decisions", f"kafka://{bootstrap}/{topics['decisions']}{suffix}",
            "--journeys", f"kafka://{bootstrap}/{topics['journeys']}", "--late", f"kafka://{bootstrap}/{topics['late']}",
            "--dead-letter", f"kafka://{bootstrap}/{topics['dead-letter']}{suffix}",
            *(["--summary", str(summary)] if summary else []),
            "--transactional-id-prefix", topics["signals"], "-D", "execution.checkpointing.interval=2s", *extra]


def event_ids(lines: list[bytes]) -> set[str]:
    ids = set()
    for raw in lines:
        try:
            ids.add(orjson.loads(raw)["event_id"])
        except (orjson.JSONDecodeError, KeyError, TypeError):
            continue  # the simulator's malformed signals
    return ids
