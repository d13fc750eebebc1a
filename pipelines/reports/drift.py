"""`journeys drift`: an offline drift report of a run's decisions against the training data of the
model version that scored them (journeys.drift): the PSI of every model input and of the score,
and each feature's shares bin by bin, as a table and as a page that works offline."""
from __future__ import annotations

import html
from collections import Counter
from typing import Iterable

import orjson
import plotly.graph_objects as go
from plotly.offline import get_plotlyjs

from journeys.drift import DriftProfile, RunningDrift

MODERATE = 0.1  # the PSI from which a shift is worth a look


def scored_versions(decisions: Iterable[dict], name: str) -> Counter:
    """How many decisions each version of the registered model `name` scored as champion."""
    return Counter(m["version"] for d in decisions for m in d.get("models") or () if m.get("model") == name)


def drift_report(decisions: Iterable[dict], profile: DriftProfile, name: str, version: str,
                 threshold: float, journey_records: Iterable[dict] = ()) -> dict:
    """journey_records: the run's journey log, for the signal mix (where the profile has one)."""
    running = RunningDrift(profile, threshold)
    for record in journey_records:
        running.add_signal(record)
    for decision in decisions:
        if any(m.get("model") == name and m.get("version") == version for m in decision.get("models") or ()):
            running.add(decision)
    figures = running.psi()
    features = {}
    for feature, value in sorted(figures.items(), key=lambda item: -item[1]):
        expected, observed = profile.counts[feature], running.seen.counts[feature]
        features[feature] = {"psi": value, "drifted": value > threshold, "bins": profile.bins[feature].labels(),
                             "expected": _shares(expected), "observed": _shares(observed)}
    return {"model": name, "version": version, "kind": profile.model, "threshold": threshold,
            "training_rows": profile.rows, "decisions": running.seen.rows, "features": features,
            "drifted": [f for f, row in features.items() if row["drifted"]]}


def _shares(counts: list[int]) -> list[float]:
    total = sum(counts)
    return [round(c / total, 4) if total else 0.0 for c in counts]


def format_drift(report: dict) -> str:
    rows = [f"Drift of {report['model']} v{report['version']} ({report['decisions']:,} decisions) from its training data "
            f"({report['training_rows']:,} rows): PSI by feature, alert above {report['threshold']:g}"]
    for feature, row in report["features"].items():
        verdict = "DRIFTED" if row["drifted"] else ("moderate" if row["psi"] > MODERATE else "")
        rows.append(f"  {feature:<26}{row['psi']:>8.3f}  {verdict}".rstrip())
    rows.append(f"  verdict: drift in {', '.join(report['drifted'])}" if report["drifted"] else
                "  verdict: no feature above the threshold")
    return "\n".join(rows)


def render_drift(report: dict) -> str:
    features = list(report["features"])
    summary = go.Figure(go.Bar(x=[report["features"][f]["psi"] for f in features][::-1], y=features[::-1],
                               orientation="h"))
    summary.add_vline(x=report["threshold"], line_dash="dash")
    summary.update_layout(title=f"PSI by feature (alert above {report['threshold']:g})", margin={"l": 180})
    figures = {"summary": summary}
    for index, feature in enumerate(features):
        row = report["features"][feature]
        figure = go.Figure([go.Bar(name="training data", x=row["bins"], y=row["expected"]),
                            go.Bar(name="decisions", x=row["bins"], y=row["observed"])])
        figure.update_layout(title=f"{feature}: PSI {row['psi']:.3f}", barmode="group", yaxis_tickformat=".0%")
        figures[f"feature-{index}"] = figure
    title = f"Drift of {report['model']} v{report['version']}"
    divs = "".join(f'<div id="{name}" class="figure"></div>' for name in figures)
    data = orjson.dumps({name: orjson.loads(figure.to_json()) for name, figure in figures.items()}).decode()
    return _PAGE.format(title=html.escape(title), plotly=get_plotlyjs(), divs=divs,
                        table=html.escape(format_drift(report)), data=data.replace("</", "<\\/"))


_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>body{{font-family:sans-serif;margin:1.5em}} .figure{{height:380px}}</style>
<script>{plotly}</script></head>
<body><h1>{title}</h1><pre>{table}</pre>{divs}
<script id="drift-data" type="application/json">{data}</script>
<script>
const FIGURES = JSON.parse(document.getElementById("drift-data").textContent);
for (const [name, figure] of Object.entries(FIGURES)) {{ Plotly.newPlot(name, figure.data, figure.layout, {{responsive: true}}); }}
</script></body></html>
"""

__all__ = ["drift_report", "format_drift", "render_drift", "scored_versions"]
