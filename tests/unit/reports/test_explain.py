"""`journeys explain`: a customer's path and decisions, with justifications, in time order,
including the anonymous visit that became the customer at login."""
from __future__ import annotations

import orjson

from pipelines.cli.main import main as journeys
from pipelines.reports.explain import explain
from tests.harness import BEGINNING, FIVE_MINUTES_LATER, ONE_MINUTE_LATER, TWO_MINUTES_LATER, a_login, a_signal, play


def a_visit_a_login_and_an_abandoned_cart() -> list[dict]:
    return [a_signal("product_view", BEGINNING, visitor="v-1"),
            a_login("v-1", "c-9", ONE_MINUTE_LATER),
            a_signal("add_to_cart", TWO_MINUTES_LATER, customer="c-9", cart_value=30),
            a_signal("complaint", FIVE_MINUTES_LATER, customer="c-9", channel="call_center")]


def test_explain_tells_the_path_and_every_decision_with_its_reason_in_time_order():
    run = play(a_visit_a_login_and_an_abandoned_cart())

    text = explain("c-9", run.decision_log, run.journey_records, every_signal=True)
    lines = text.splitlines()

    assert lines[0] == "Journey of c-9 (with anonymous visits v-1)"
    mine = [d for d in run.decision_log if d["journey"] in ("c-9", "v-1")]
    assert lines[1] == f"  {len(mine)} decisions" and len(mine) == 4  # the visit's sign-up prompt, the cart, the complaint
    assert all(d["decision_id"] in text and (d["action"] or "held back") in text for d in mine)
    assert "winback_offer by email (retention) 1.8 held back: consent:email, complaint_cooldown" in text
    visit = next(i for i, l in enumerate(lines) if "product_view by web, stays in discovery" in l and "[as v-1]" in l)
    login = next(i for i, l in enumerate(lines) if "identified: visitor v-1 is c-9" in l)
    cart = next(i for i, l in enumerate(lines) if "-> intent on add_to_cart" in l)
    escalation = next(i for i, l in enumerate(lines) if "DECISION escalate_to_agent" in l)
    assert visit < login < cart < escalation
    assert lines[cart + 1].split("DECISION ")[1].startswith("onsite_cart_nudge")
    assert lines[cart + 2].strip().startswith("why: Entered intent")


def test_the_command_reads_a_runs_logs_and_says_when_the_customer_is_unknown(tmp_path, capsys):
    run = play(a_visit_a_login_and_an_abandoned_cart())
    (tmp_path / "decisions").mkdir()
    (tmp_path / "journeys").mkdir()
    (tmp_path / "decisions" / "part-0.jsonl").write_bytes(b"".join(orjson.dumps(d) + b"\n" for d in run.decision_log))
    (tmp_path / "journeys" / "part-0.jsonl").write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in run.journey_records))

    assert journeys(["explain", "c-9", "--log", str(tmp_path / "decisions")]) == 0
    assert "identified: visitor v-1 is c-9" in capsys.readouterr().out
    assert journeys(["explain", "c-nobody", "--log", str(tmp_path / "decisions")]) == 1
    assert "no journey or decision for c-nobody" in capsys.readouterr().out
