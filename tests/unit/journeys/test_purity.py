"""The core (journeys/) is pure: it imports nothing but itself, the standard library and three
codecs, and reads no clock and no file but its own packaged configuration and schemas.

Two checks: every module's source is read for what it imports and calls, and the core is run
over simulated signals with every file the process opens watched."""
from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

CORE = Path(__file__).resolve().parents[3] / "journeys"
ALLOWED_PACKAGES = {"journeys", "fastavro", "orjson", "yaml"}
# Standard-library modules that reach a clock, the file system, the network, other processes or
# chance: none of them belongs in a function of its inputs.
IMPURE_STDLIB = {"time", "os", "pathlib", "shutil", "glob", "tempfile", "io", "socket", "ssl", "http", "urllib",
                 "subprocess", "threading", "multiprocessing", "asyncio", "concurrent", "random", "secrets", "uuid",
                 "sqlite3", "logging", "signal", "select", "mmap", "fileinput", "zipfile", "tarfile", "csv"}
# Calls that read a clock, whatever they are called on.
CLOCK_CALLS = {"now", "utcnow", "today", "time", "time_ns", "perf_counter", "monotonic", "process_time"}
FILE_CALLS = {"read_text", "read_bytes", "write_text", "write_bytes", "open"}
# In-memory streams only: contract.py reads and writes Avro bodies in a BytesIO.
ALLOWED_NAMES = {("io", "BytesIO")}


def core_modules() -> list[Path]:
    return sorted(CORE.rglob("*.py"))


def test_the_core_has_the_modules_the_issue_names_and_no_report_or_tool():
    names = {path.stem for path in core_modules()}
    assert {"contract", "intake", "state", "keyed", "transitions", "decision_point", "agents", "policy", "scoring",
            "ontology", "settings", "privacy", "ids", "timeutil", "outputs"} <= names
    assert not names & {"summary", "uplift", "explain", "model_comparison", "journey_map", "map_page", "map_server",
                        "simulate", "outcome_sim", "importer", "inputs", "reference"}


@pytest.mark.parametrize("path", core_modules(), ids=lambda path: path.name)
def test_a_core_module_imports_only_the_core_the_standard_library_and_the_codecs(path):
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            roots = [(alias.name.split(".")[0], alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            roots = [(node.module.split(".")[0], node.module)]
            if node.module == "io":
                roots = [] if all(("io", a.name) in ALLOWED_NAMES for a in node.names) else roots
        else:
            continue
        for root, name in roots:
            if root in ALLOWED_PACKAGES or root == "__future__":
                continue
            assert root in sys.stdlib_module_names, f"{path.name} imports {name}, which is neither the core nor the standard library"
            if root == "io" and isinstance(node, ast.Import):
                continue  # checked by name below
            assert root not in IMPURE_STDLIB, f"{path.name} imports {name}"


@pytest.mark.parametrize("path", core_modules(), ids=lambda path: path.name)
def test_a_core_module_calls_no_clock_and_opens_no_file_but_its_packaged_resources(path):
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "io":
            assert (node.value.id, node.attr) in ALLOWED_NAMES, f"{path.name} line {node.lineno}: io.{node.attr}"
        if not isinstance(node, ast.Call):
            continue
        function = node.func
        if isinstance(function, ast.Name):
            assert function.id not in ("open", "input", "print", "exec", "eval", "breakpoint"), \
                f"{path.name} line {node.lineno}: {function.id}()"
        elif isinstance(function, ast.Attribute):
            assert function.attr not in CLOCK_CALLS, f"{path.name} line {node.lineno}: .{function.attr}() reads a clock"
            if function.attr in FILE_CALLS:
                assert _is_packaged_resource(function.value), \
                    f"{path.name} line {node.lineno}: .{function.attr}() on something else than the packaged resources"


def _is_packaged_resource(node: ast.AST) -> bool:
    """Whether a call chain starts at resources.files("journeys..."), the core's own package data."""
    while isinstance(node, (ast.Call, ast.Attribute)):
        if isinstance(node, ast.Call):
            function = node.func
            if (isinstance(function, ast.Attribute) and function.attr == "files"
                    and isinstance(function.value, ast.Name) and function.value.id == "resources"):
                first = node.args[0] if node.args else None
                return isinstance(first, ast.Constant) and str(first.value).startswith("journeys")
            node = function
        else:
            node = node.value
    return False


class _OpenedFiles:
    """Every file the process opens while watching."""

    def __init__(self):
        self.watching = False
        self.opened: list[str] = []
        sys.addaudithook(self._hook)

    def _hook(self, event: str, args: tuple) -> None:
        if self.watching and event == "open" and isinstance(args[0], (str, bytes, Path)):
            self.opened.append(str(args[0]))


OPENED = _OpenedFiles()  # an audit hook cannot be removed: one for the whole session, idle but here


def test_running_the_core_opens_no_file_but_its_own_and_the_time_zone_database():
    from journeys.assembly import build_intake, build_roles
    from journeys.contract import Rejection
    from journeys.keyed import CUSTOMER, VISITOR
    from journeys.ontology import packaged_ontology
    from journeys.outputs import sort_outputs
    from journeys.policy import packaged_policy
    from journeys.replay import replay_key
    from journeys.settings import packaged_settings
    from pipelines.tools.simulate import SimulationSpec, simulate
    from tests.harness import NOW

    lines = list(simulate(SimulationSpec(customers=40, days=3, seed=5)))
    clock_reads = []

    def clock() -> float:
        clock_reads.append(1)
        return 0.0

    OPENED.watching = True
    try:
        ontology, settings = packaged_ontology(), packaged_settings()
        intake = build_intake(settings)
        roles = build_roles(ontology, settings, packaged_policy(), clock, push_features=True)
        items = {VISITOR: {}, CUSTOMER: {}}
        for position, raw in enumerate(lines):
            taken = intake.take(raw, NOW)
            if not isinstance(taken, Rejection):
                items[taken.role].setdefault(taken.key, []).append((position, taken.item))
        decisions = 0
        for role in (VISITOR, CUSTOMER):
            for key in sorted(items[role]):
                replayed = replay_key(roles[role], items[role][key], NOW)
                decisions += len(sort_outputs(replayed.out).decision_log)
                for position, routed in replayed.routed:
                    items[CUSTOMER].setdefault(routed.key, []).append((position, routed.item))
    finally:
        OPENED.watching = False
    assert decisions > 50 and clock_reads, "the run decided, timing itself only with the clock it was given"
    foreign = [path for path in OPENED.opened
               if not (path.startswith(str(CORE / "conf")) or path.startswith(str(CORE / "schemas"))
                       or "zoneinfo" in path or "tzdata" in path or path.endswith(".pyc") or path.endswith(".py"))]
    assert foreign == []
