"""The journey map as one self-contained HTML page: plotly's JavaScript is inlined from the plotly
package, so the page opens offline, with no CDN. Figures: the stage flow (Sankey, with a channel
filter), stage populations over time, the funnel, the most common paths, decisions by action with
outcome rates and uplift, and one customer's timeline chosen from a search box."""
from __future__ import annotations

import html
from datetime import datetime, timezone

import orjson
import plotly.graph_objects as go
from plotly.offline import get_plotlyjs

from journeys.outputs import LogKind
from pipelines.reports.journey_map import JourneyMap
from pipelines.reports.uplift import NOT_CLEAR, interval_text, percent

MAX_TIMELINES = 5000  # customers whose timeline the page carries (the most active first)


def render(built: JourneyMap, title: str = "Journey map", live: tuple[str, int] | None = None) -> str:
    """live: (version, seconds) for a page that `journeys serve` keeps current: every few seconds it
    asks the server for the version of the outputs and reloads only when they changed."""
    figures = {
        "sankey": _sankey(built), "populations": _populations(built), "funnel": _funnel(built),
        "paths": _paths(built), "decisions": _decisions(built), "consistency": _consistency(built),
    }
    busiest = sorted(built.timelines.items(), key=lambda item: (-len(item[1]), item[0]))[:MAX_TIMELINES]
    timelines = {journey: [_line(entry) for entry in entries] for journey, entries in sorted(busiest)}
    data = {"figures": {name: orjson.loads(figure.to_json()) for name, figure in figures.items()},
            "timelines": timelines, "uplift": built.uplift, "funnel": built.funnel}
    refresh = _LIVE.format(version=orjson.dumps(live[0]).decode(), ms=live[1] * 1000) if live else ""
    return _PAGE.format(title=html.escape(title), refresh=refresh, plotly=get_plotlyjs(),
                        data=orjson.dumps(data).decode().replace("</", "<\\/"),
                        default_customer=html.escape(next(iter(timelines), "")))


def _line(entry: dict) -> list:
    """A timeline entry as the page shows it: [time, text, css class, justification]."""
    when = datetime.fromtimestamp(entry["at"] / 1000, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
    if entry["kind"] == "decision":
        if entry["acted"]:
            what = f"DECISION {entry['action']} by {entry['channel']}"
        else:
            what = "DECISION none (control group)" if entry["control"] else "DECISION none (held back)"
        return [when, what, "decision" if entry["acted"] else "held", entry.get("justification") or ""]
    if entry.get("from_stage"):
        text = f"{entry['from_stage']} -> {entry['stage']}" + (f" on {entry['event_type']}" if entry.get("event_type") else "")
        return [when, text, "stage", ""]
    if entry["kind"] == LogKind.OUTCOME:
        return [when, f"outcome {entry['event_type']} of {entry['decision_id']}", "outcome", ""]
    text = f"{entry.get('event_type') or entry['kind']}" + (f" by {entry['channel']}" if entry.get("channel") else "")
    return [when, f"{text} ({entry.get('stage') or ''})", "signal", ""]


def _sankey(built: JourneyMap) -> go.Figure:
    stages = list(built.stages)
    index = {stage: i for i, stage in enumerate(stages)}
    figure = go.Figure()
    channels = list(built.transitions) or ["all"]
    for channel in channels:
        pairs = built.transitions.get(channel, {})
        figure.add_trace(go.Sankey(
            name=channel, visible=channel == "all", node={"label": stages, "pad": 18},
            link={"source": [index[a] for a, _ in pairs], "target": [index[b] for _, b in pairs],
                  "value": list(pairs.values()), "label": [f"{a} -> {b}" for a, b in pairs]}))
    buttons = [{"label": channel, "method": "update",
                "args": [{"visible": [c == channel for c in channels]}, {"title": f"Stage flow: {channel}"}]}
               for channel in channels]
    figure.update_layout(title="Stage flow: all", updatemenus=[{"buttons": buttons, "x": 1.0, "y": 1.15}])
    return figure


def _populations(built: JourneyMap) -> go.Figure:
    days = [datetime.fromtimestamp(ms / 1000, tz=timezone.utc).date().isoformat() for ms in built.populations.get("days", [])]
    mode = "lines+markers" if len(days) == 1 else "lines"  # one day is a point, and a point needs a marker
    figure = go.Figure([go.Scatter(x=days, y=built.populations.get(stage, []), name=stage, stackgroup="stages", mode=mode)
                        for stage in built.stages if stage in built.populations])
    figure.update_layout(title="Journeys by stage, at the end of each day")
    return figure


def _funnel(built: JourneyMap) -> go.Figure:
    figure = go.Figure(go.Funnel(y=[stage for stage, _, _ in built.funnel], x=[count for _, count, _ in built.funnel],
                                 textinfo="value+percent previous"))
    figure.update_layout(title="Funnel: journeys that reached each stage")
    return figure


def _paths(built: JourneyMap) -> go.Figure:
    figure = go.Figure(go.Bar(x=[count for _, count in built.paths][::-1], y=[path for path, _ in built.paths][::-1],
                              orientation="h"))
    figure.update_layout(title="Most common paths", margin={"l": 380})
    return figure


def _decisions(built: JourneyMap) -> go.Figure:
    actions = list(built.uplift)
    rows = [built.uplift[a] for a in actions]

    figure = go.Figure(go.Table(
        header={"values": ["action", "treated", "control", "opened", "clicked", "converted (treated)",
                           "converted (control)", "uplift", f"95% interval ({NOT_CLEAR}: includes zero)"]},
        cells={"values": [actions, [r["treated"] for r in rows], [r["control"] for r in rows],
                          [percent(r["outcome_rates"].get("opened")) for r in rows],
                          [percent(r["outcome_rates"].get("clicked")) for r in rows],
                          [percent(r["converted_treated"]) for r in rows], [percent(r["converted_control"]) for r in rows],
                          [percent(r["uplift"]) for r in rows], [interval_text(r) for r in rows]]}))
    figure.update_layout(title="Decisions by action: outcome rates and uplift against the control group")
    return figure


def _consistency(built: JourneyMap) -> go.Figure:
    figures = built.consistency
    pairs = figures.get("stale_by_channel_pair") or {}
    figure = go.Figure(go.Bar(x=list(pairs.values())[::-1], y=list(pairs)[::-1], orientation="h"))
    share = "-" if figures.get("share") is None else f"{figures['share']:.2%}"
    figure.update_layout(title=f"Cross-channel consistency: {share} of {figures.get('acted', 0):,} acted decisions still "
                               f"valid when sent; stale ones by channel pair (signal -> decision)", margin={"l": 200})
    return figure


_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>body{{font-family:sans-serif;margin:1.5em}} .figure{{height:480px}} #timeline li{{margin:.3em 0}}
.decision{{color:#0a5}} .held{{color:#a50}} .why{{color:#555;font-size:90%}}</style>
<script>{plotly}</script></head>
<body><h1>{title}</h1>
<div id="sankey" class="figure"></div><div id="populations" class="figure"></div>
<div id="funnel" class="figure"></div><div id="paths" class="figure"></div>
<div id="decisions" class="figure"></div><div id="consistency" class="figure"></div>
<h2>One customer's timeline</h2>
<input id="search" list="customers" placeholder="customer or visitor id" value="{default_customer}">
<datalist id="customers"></datalist><ol id="timeline"></ol>
<script id="map-data" type="application/json">{data}</script>
<script>
const MAP = JSON.parse(document.getElementById("map-data").textContent);
for (const [name, figure] of Object.entries(MAP.figures)) {{
  Plotly.newPlot(name, figure.data, figure.layout, {{responsive: true}});
}}
const list = document.getElementById("customers");
for (const id of Object.keys(MAP.timelines)) {{ const o = document.createElement("option"); o.value = id; list.appendChild(o); }}
function show(id) {{
  const ol = document.getElementById("timeline"); ol.innerHTML = "";
  for (const [when, text, kind, why] of MAP.timelines[id] || []) {{
    const li = document.createElement("li"); li.className = kind; li.textContent = when + "  " + text;
    if (why) {{ const w = document.createElement("div"); w.className = "why"; w.textContent = why; li.appendChild(w); }}
    ol.appendChild(li);
  }}
}}
const search = document.getElementById("search");
search.value = decodeURIComponent(location.hash.slice(1)) || search.value;  // kept across live reloads
search.addEventListener("change", ev => {{ location.hash = encodeURIComponent(ev.target.value); show(ev.target.value); }});
show(search.value);
</script>{refresh}</body></html>
"""

_LIVE = """<script>
const PAGE_VERSION = {version};
setInterval(async () => {{
  try {{
    const response = await fetch("version", {{cache: "no-store"}});
    if (response.ok && (await response.text()) !== PAGE_VERSION) location.reload();
  }} catch (error) {{}}  // the server is gone for now: ask again next time
}}, {ms});
</script>"""
