"""Outcome rates and uplift against the control group, worked by hand."""
from __future__ import annotations

from pipelines.reports.uplift import format_uplift, uplift_table


def decided(decision_id: str, action: str, control: bool = False) -> dict:
    return {"decision_id": decision_id, "action": action, "control": control}


def test_uplift_is_the_treated_rate_minus_the_control_rate_of_the_same_action():
    decisions = [decided("t1", "cart_reminder"), decided("t2", "cart_reminder"), decided("t3", "cart_reminder"),
                 decided("t4", "cart_reminder"), decided("c1", "cart_reminder", True), decided("c2", "cart_reminder", True),
                 decided("t5", "winback_offer")]
    outcomes = [{"decision_id": "t1", "outcome": "converted"}, {"decision_id": "t2", "outcome": "converted"},
                {"decision_id": "t3", "outcome": "opened"}, {"decision_id": "t1", "outcome": "opened"},
                {"decision_id": "c1", "outcome": "opened"}]

    table = uplift_table(decisions, outcomes)

    reminder = table["cart_reminder"]
    assert (reminder["treated"], reminder["control"]) == (4, 2)
    assert reminder["converted_treated"] == 0.5 and reminder["converted_control"] == 0.0 and reminder["uplift"] == 0.5
    assert reminder["outcome_rates"]["opened"] == 0.5  # control customers' outcomes are not the action's
    assert table["winback_offer"]["uplift"] is None  # no control customers for it: no uplift to claim
    assert "cart_reminder" in format_uplift(table) and "50.0%" in format_uplift(table)


def test_every_uplift_has_its_95_percent_interval_and_one_that_includes_zero_is_marked():
    small = [decided(f"t{n}", "cart_reminder") for n in range(186)] + \
            [decided(f"c{n}", "cart_reminder", True) for n in range(25)]
    outcomes = [{"decision_id": f"t{n}", "outcome": "converted"} for n in range(20)] + \
               [{"decision_id": f"c{n}", "outcome": "converted"} for n in range(3)]

    row = uplift_table(small, outcomes)["cart_reminder"]

    assert row["uplift"] == round(20 / 186 - 3 / 25, 4)
    assert row["uplift_interval"]["low"] < 0 < row["uplift_interval"]["high"] and not row["uplift_interval"]["clear"]
    assert "~" in format_uplift({"cart_reminder": row}) and "chance" in format_uplift({"cart_reminder": row})


def test_a_large_clear_uplift_is_not_marked():
    decisions = [decided(f"t{n}", "cart_reminder") for n in range(70)] + \
                [decided(f"c{n}", "cart_reminder", True) for n in range(80)]
    outcomes = [{"decision_id": f"t{n}", "outcome": "converted"} for n in range(56)] + \
               [{"decision_id": f"c{n}", "outcome": "converted"} for n in range(48)]

    row = uplift_table(decisions, outcomes)["cart_reminder"]

    assert row["uplift_interval"] == {"estimate": 0.2, "low": 0.0524, "high": 0.3339, "clear": True}
    assert "[+5.2%, +33.4%]" in format_uplift({"cart_reminder": row}) and "~" not in format_uplift({"cart_reminder": row})
