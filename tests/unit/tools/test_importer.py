"""journeys import: third-party clickstreams in, contract signals and a dead-letter file out."""
import orjson
import pytest

from journeys.yamlconf import ConfigError
from pipelines.cli.main import main as journeys_cli
from pipelines.tools.importer import load_mapping
from tests.harness import CLICKS_CSV, run_import


def test_a_csv_clickstream_becomes_contract_signals(tmp_path):
    signals, dead = run_import(tmp_path, CLICKS_CSV)
    assert [s["event_type"] for s in signals] == ["page_view", "purchase", "fav", "page_view"]
    first = signals[0]
    assert first["customer_id"] == "1" and first["anonymous_id"] == "s1" and first["channel"] == "web"
    assert first["event_time"] == 1511544070000
    assert first["attributes"] == {"item_id": "2268318", "category_id": "2520377"}
    assert signals[2]["anonymous_id"] is None  # "NA" is a null value
    assert signals[3]["attributes"]["category_id"] == "8,9"  # quoted delimiter


def test_rows_that_cannot_be_mapped_go_to_the_dead_letter_file_with_their_reason(tmp_path):
    _, dead = run_import(tmp_path, CLICKS_CSV)
    assert [(d["row"], d["reason"]) for d in dead] == [(4, "missing_identity"), (5, "bad_event_time"), (8, "unreadable_row")]
    assert dead[1]["original"] == "2,3,4,cart,notatime,s2"


def test_imported_event_ids_are_stable_across_runs(tmp_path):
    first, _ = run_import(tmp_path, CLICKS_CSV)
    second, _ = run_import(tmp_path, CLICKS_CSV)
    assert [s["event_id"] for s in first] == [s["event_id"] for s in second]
    assert len({s["event_id"] for s in first}) == len(first)


def test_tsv_without_a_header_takes_its_columns_from_the_mapping(tmp_path):
    content = "1\t10\t20\tpv\t2017-11-25T01:00:00Z\ts1\n"
    extra = "header: false\ncolumns: [user_id, item_id, category_id, behavior, ts, session_id]"
    signals, dead = run_import(tmp_path, content, fmt="tsv", time_format="iso8601", extra=extra)
    assert dead == [] and signals[0]["event_time"] == 1511571600000


def test_json_lines_with_a_strftime_time_format(tmp_path):
    content = '{"user_id": "9", "behavior": "buy", "ts": "25/11/2017 01:00", "session_id": null, "item_id": 5}\nnot json\n'
    signals, dead = run_import(tmp_path, content, fmt="jsonl", time_format="'%d/%m/%Y %H:%M'")
    assert signals[0]["event_type"] == "purchase" and signals[0]["attributes"] == {"item_id": "5"}
    assert signals[0]["event_time"] == 1511571600000
    assert dead[0]["reason"] == "unreadable_row"


def test_a_mapping_without_an_identity_is_refused(tmp_path):
    path = tmp_path / "mapping.yaml"
    path.write_text("fields:\n  event_type: behavior\n  event_time: ts\n  channel: {value: web}\n")
    with pytest.raises(ConfigError, match="customer_id, anonymous_id or both"):
        load_mapping(path)


def test_a_mapping_with_a_misspelt_field_is_refused_with_its_line(tmp_path):
    path = tmp_path / "mapping.yaml"
    path.write_text("fields:\n  customer: user_id\n")
    with pytest.raises(ConfigError, match=r"mapping.yaml line 2: 'customer' is not a signal field"):
        load_mapping(path)


def test_an_avro_archive_converts_to_json_lines_with_rejections_set_aside(tmp_path):
    import base64

    from journeys.contract import SignalDecoder, write_avro_container
    from tests.harness import BEGINNING, a_signal

    signals = [a_signal("page_view", BEGINNING + i) for i in range(3)] + [a_signal("page_view", 4102444800000)]
    archive = tmp_path / "signals.avro"
    with open(archive, "wb") as sink:
        write_avro_container(signals, sink, version=1)
    out = tmp_path / "signals.jsonl"
    assert journeys_cli(["convert", str(archive), str(out)]) == 0
    converted = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    assert [s["event_id"] for s in converted] == [s["event_id"] for s in signals[:3]]
    assert all(s["schema_version"] == 1 and s["timezone"] == "" for s in converted)
    [dead] = [orjson.loads(line) for line in (tmp_path / "signals.dead-letter.jsonl").read_bytes().splitlines()]
    assert dead["reason"] == "event_time_in_future"
    assert SignalDecoder().decode_avro(base64.b64decode(dead["original"]), 4102444800000)["event_id"] == signals[3]["event_id"]


GROUPED_BY_USER = """id,user_id,item_id,category_id,behavior,ts,session_id
1,u1,1,1,pv,1511544000,
2,u1,1,1,pv,1511547600,
3,u2,1,1,pv,1511540000,
4,u2,1,1,buy,1511540400,
"""


def test_a_file_in_time_order_per_user_imports_without_a_warning(tmp_path, capsys):
    signals, _ = run_import(tmp_path, GROUPED_BY_USER)
    assert [s["customer_id"] for s in signals] == ["u1", "u1", "u2", "u2"]  # the file's order
    assert "warning" not in capsys.readouterr().err


def test_a_user_going_back_in_time_beyond_the_bound_is_warned_about_and_sort_puts_it_right(tmp_path, capsys):
    backwards = GROUPED_BY_USER + "5,u1,1,1,pv,1511540000,\n"
    run_import(tmp_path, backwards)
    assert "1 signals are more than the lateness bound (2m) behind" in capsys.readouterr().err
    signals, _ = run_import(tmp_path, backwards, options=("--sort",))
    assert [s["event_time"] for s in signals] == sorted(s["event_time"] for s in signals)
    assert "warning" not in capsys.readouterr().err
