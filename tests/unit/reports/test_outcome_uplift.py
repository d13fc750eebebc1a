"""The feedback loop measured on a seeded simulation: outcomes depend on the action, the control
group is chosen by the policy's hash, and the uplift table recovers the simulator's true effect."""
from __future__ import annotations

from journeys.contract import SignalDecoder
from journeys.policy import loads_policy
from journeys.settings import packaged_settings
from pipelines.reports.uplift import uplift_table
from pipelines.tools.outcome_sim import OutcomeModel, as_outcome_records, outcomes_for
from tests.harness import BEGINNING, HOUR, NOW, line

POLICY = loads_policy("policy: sim\nversion: '1'\ncontrol_group: {share: 0.3, salt: uplift}\n")


def decisions(count: int) -> list[dict]:
    made = []
    for index in range(count):
        customer = f"c-{index}"
        action = "abandoned_cart_reminder" if index % 2 else "onsite_cart_nudge"
        made.append({"decision_id": f"d-{index}", "journey": customer, "customer_id": customer, "action": action,
                     "channel": "email" if index % 2 else "web", "decided_at": BEGINNING + index * HOUR // 100,
                     "control": POLICY.in_control_group(customer)})
    return made


def test_the_uplift_on_a_seeded_simulation_is_within_tolerance_of_the_true_effect():
    made = decisions(40_000)
    model = OutcomeModel()
    table = uplift_table(made, as_outcome_records(outcomes_for(made, model, seed=3)))

    for action in ("abandoned_cart_reminder", "onsite_cart_nudge"):
        row = table[action]
        assert row["control"] > 5_000 and row["treated"] > 12_000
        # Standard error of the difference is about 0.006 here; 0.02 is over three of them.
        assert abs(row["uplift"] - model.effects[action]) < 0.02, (action, row)
    assert table["abandoned_cart_reminder"]["uplift"] > table["onsite_cart_nudge"]["uplift"]


def test_outcomes_are_the_same_for_the_same_seed_whatever_the_order_and_are_valid_signals():
    made = decisions(200)
    assert outcomes_for(made, seed=5) == outcomes_for(list(reversed(made)), seed=5)
    assert outcomes_for(made, seed=5) != outcomes_for(made, seed=6)
    decoder = SignalDecoder(packaged_settings().intake)
    signals = outcomes_for(made, seed=5)
    assert all(decoder.decode_json(line(s), NOW)["event_type"] == s["event_type"] for s in signals)
    assert all(not s["event_type"] == "action_delivered" or not d["control"] for d in made for s in signals
               if s["attributes"]["decision_id"] == d["decision_id"])
