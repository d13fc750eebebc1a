"""The README is a front door and the docs say what the code does: every link leads somewhere,
every metric the docs name is one the job registers (and every one it registers is named), and
every command-line option they quote is one a parser of the project defines."""
from __future__ import annotations

import ast
import re

import pytest

from tests.harness import ROOT

DOCS = sorted((ROOT / "docs").glob("*.md"))
PAGES = [ROOT / "README.md", *DOCS]
# Every file whose argparse parsers the docs may quote.
PARSERS = [ROOT / "jobs" / "journey_job.py", *sorted((ROOT / "pipelines" / "cli").glob("*.py")), ROOT / "models" / "cli.py",
           ROOT / "pipelines" / "kafka" / "tools.py", ROOT / "bench" / "run_bench.py", *sorted((ROOT / "scripts").glob("*.py"))]
# Options of other programs the docs quote, with whose they are.
OTHER_TOOLS = {
    "--runner", "--direct_num_workers", "--direct_running_mode", "--flink_master", "--setup_file",  # Beam, passed through
    "--backend-store-uri", "--artifacts-destination",  # mlflow server
    "--no-deps",  # pip
    "--savepoint",  # flink stop --savepointPath (the check reads options up to the first capital)
}


def test_the_readme_is_a_front_door_of_at_most_250_lines():
    assert len((ROOT / "README.md").read_text().splitlines()) <= 250


def test_the_readme_links_every_docs_page():
    readme = (ROOT / "README.md").read_text()
    assert DOCS and [page.name for page in DOCS if f"(docs/{page.name})" not in readme] == []


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_every_relative_link_leads_to_a_file_that_exists(page):
    text = _outside_code(page.read_text())
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if target.startswith(("http://", "https://", "#", "mailto:")):
            continue
        path = target.split("#")[0]
        assert (page.parent / path).exists(), f"{page.name} links to {target}, which does not exist"


def test_no_page_points_outside_the_repository():
    for page in PAGES:
        assert "../shared" not in page.read_text() and "FINDINGS" not in page.read_text(), page.name


def registered_metrics() -> dict[str, tuple]:
    """name -> label names, as the job's metric classes register them on a metric group."""
    from journeys.policy import packaged_policy
    from journeys.policy_updates import PolicyInForce
    from pipelines.flink import metrics
    from pipelines.mlflow.settings import ModelServingSettings

    group = _RecordingGroup()
    created = [metrics.IntakeMetrics(group), metrics.JourneyMetrics(group),
               metrics.DecisionMetrics(group, PolicyInForce(packaged_policy()), models_configured=True),
               metrics.FeatureMetrics(group, None, None)]
    models = metrics.ModelMetrics(group)
    models.watch(type("Source", (), {"settings": ModelServingSettings("sqlite:///unused")})())
    created.append(models)
    created.append(metrics.DriftMetrics(group, None, threshold=0.25))
    created.append(metrics.CanaryMetrics(group))
    found = {name: () for name in group.names}
    for holder in created:
        for value in vars(holder).values():
            if isinstance(value, (metrics.LabeledCounters, metrics.LabeledSettings)):
                found[value._name] = value._labels
    return found


class _RecordingGroup:
    def __init__(self):
        self.names: list[str] = []

    def add_group(self, name, value=None):
        return self

    def counter(self, name):
        self.names.append(name)
        return self

    distribution = counter

    def inc(self, by=1):
        pass

    def update(self, value):
        pass


def documented_metrics() -> dict[str, tuple]:
    """name -> label names, from the metrics table of docs/metrics.md (names in backticks in the
    first column, labels in the second)."""
    documented = {}
    for line in (ROOT / "docs" / "metrics.md").read_text().splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")] if line.startswith("| `") else []
        if len(cells) >= 3:
            labels = tuple(re.findall(r"`([^`]+)`", cells[1]))
            for name in re.findall(r"`([a-z0-9_]+)`", cells[0]):
                documented[name] = labels
    return documented


def test_the_metrics_the_docs_name_are_the_metrics_the_job_registers():
    documented, registered = documented_metrics(), registered_metrics()
    assert len(documented) > 20, "docs/metrics.md has no metrics table"
    assert sorted(set(documented) - set(registered)) == [], "named in docs/metrics.md, registered by nothing"
    assert sorted(set(registered) - set(documented)) == [], "registered, missing from docs/metrics.md"
    assert {name: labels for name, labels in documented.items() if labels} == \
        {name: labels for name, labels in registered.items() if labels}


def defined_options() -> set[str]:
    options = set()
    for path in PARSERS:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "add_argument":
                options.update(arg.value for arg in node.args
                               if isinstance(arg, ast.Constant) and str(arg.value).startswith("--"))
    return options


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_every_option_the_docs_quote_is_defined_by_a_parser(page):
    defined = defined_options()
    assert {"--signals", "--feature-repo", "--emit", "--tracking-uri"} <= defined
    quoted = {option for code in re.findall(r"`[^`]+`|```.*?```", page.read_text(), re.S)
              for option in re.findall(r"(?<![\w-])--[a-z][a-z0-9_-]*", code)}
    assert sorted(quoted - defined - OTHER_TOOLS) == []


def _outside_code(text: str) -> str:
    return re.sub(r"```.*?```", "", text, flags=re.S)
