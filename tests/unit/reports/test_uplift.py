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


def reminders(treated: int, converted: int, control: int, converted_in_control: int) -> dict:
    """The uplift row of cart reminders sent to `treated` customers and held back from `control`."""
    decisions = [decided(f"t{n}", "cart_reminder") for n in range(treated)] + \
        [decided(f"c{n}", "cart_reminder", True) for n in range(control)]
    outcomes = [{"decision_id": f"t{n}", "outcome": "converted"} for n in range(converted)] + \
        [{"decision_id": f"c{n}", "outcome": "converted"} for n in range(converted_in_control)]
    return uplift_table(decisions, outcomes)["cart_reminder"]


def test_every_uplift_has_its_95_percent_interval_and_one_that_includes_zero_is_marked():
    row = reminders(treated=186, converted=20, control=25, converted_in_control=3)

    assert row["uplift"] == round(20 / 186 - 3 / 25, 4)
    assert row["uplift_interval"]["low"] < 0 < row["uplift_interval"]["high"] and not row["uplift_interval"]["clear"]
    assert "~" in format_uplift({"cart_reminder": row}) and "chance" in format_uplift({"cart_reminder": row})


def test_a_large_clear_uplift_is_not_marked():
    row = reminders(treated=70, converted=56, control=80, converted_in_control=48)

    assert row["uplift_interval"] == {"estimate": 0.2, "low": 0.0524, "high": 0.3339, "clear": True}
    assert "[+5.2%, +33.4%]" in format_uplift({"cart_reminder": row}) and "~" not in format_uplift({"cart_reminder": row})
