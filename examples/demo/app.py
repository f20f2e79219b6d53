"""bgcb demo: the five examples of Dash's background-callback docs, plus the
queue, a job that runs again later, and an error, on the diskcache backend (warm worker processes, no server)
or any other (``BGCB_BACKEND=celery`` with ``bgcb worker app`` beside it).

    python3 -m pip install -r examples/demo/requirements.txt
    python3 examples/demo/app.py            # then open http://127.0.0.1:8050

Options come from the environment: ``DEMO_PORT`` (8050), ``DEMO_SERVER``
(flask; fastapi or quart on Dash 4.4+), and the backend's
``BGCB_DISKCACHE_WORKERS`` (CPU count), ``BGCB_DISKCACHE_DIRECTORY`` ...
"""

from __future__ import annotations

import os
import tempfile
import time

import dash
import plotly.graph_objects as go
from dash import Dash, Input, Output, State, callback, dcc, html, set_props

import bgcb

# One manager for the page; the queue example keeps old jobs when re-clicked,
# so that several clicks queue several jobs instead of cancelling the last,
# and shows a waiting job's place and estimated wait in "queue-wait".
manager = bgcb.manager()
queue_manager = bgcb.manager(
    on_retrigger="keep",
    waiting=Output("queue-wait", "children"),
    # Who clicks: two simulated users (the radio buttons); a real app reads its login here
    # (bgcb.owner_header("X-Forwarded-User"), a session value). Owners take turns in the queue.
    owner=lambda: dash.callback_context.states.get("queue-user.value"),
    # At most 3 waiting jobs per user: a 4th click is refused at once, and on_error says why.
    max_queued_per_owner=3,
)
# The "rate-limited API" example: a job that may not call yet asks to run again later, freeing its worker.
api_manager = bgcb.manager(on_retrigger="keep", waiting=Output("api-wait", "children"))
API_EVERY = 4.0  # seconds between two calls the pretend API accepts
API_CLOCK = os.path.join(tempfile.gettempdir(), "bgcb-demo-api-clock")

# DEMO_SERVER=fastapi or quart serves the demo on Dash 4.4's other servers (pip install "dash[fastapi]").
SERVER = os.environ.get("DEMO_SERVER", "flask")
app = Dash(
    __name__,
    title="bgcb demo",
    background_callback_manager=manager,
    **({"backend": SERVER} if SERVER != "flask" else {}),
)
server = app.server
bgcb.jobs_page(app)  # the live jobs page at /bgcb/jobs (cancel buttons for requests from this machine)

HIDDEN, SHOWN = {"visibility": "hidden"}, {"visibility": "visible"}
CARD = {"border": "1px solid #ddd", "borderRadius": "8px", "padding": "12px 16px", "margin": "10px 0"}


def card(title: str, note: str, *children) -> html.Div:
    return html.Div(
        [html.H3(title, style={"margin": "0 0 4px"}), html.Small(note), html.Div(children, style={"marginTop": 8})], style=CARD
    )


app.layout = html.Div(
    [
        html.H1("Dash background callbacks on bgcb"),
        html.P(
            [
                "Backend ",
                html.Code(manager.backend.name),
                f" with {manager.backend.options.get('workers', '?')} warm worker process(es). ",
                "Jobs wait in a FIFO queue when every worker is busy: start a few and watch the queue below, or on the ",
                html.A("live jobs page", href="/bgcb/jobs", target="_blank"),
                ".",
            ]
        ),
        card(
            "1. Simple background callback",
            "The callback sleeps 2 s in a worker process; the page stays responsive.",
            html.Button("Run", id="simple-btn"),
            html.Span(id="simple-out", style={"marginLeft": 12}),
        ),
        card(
            "2. Disable the button while it runs",
            "running=[(Output('disable-btn', 'disabled'), True, False)]",
            html.Button("Run", id="disable-btn"),
            html.Span(id="disable-out", style={"marginLeft": 12}),
        ),
        card(
            "3. Cancel a running job",
            "cancel=Input('cancel-stop', 'n_clicks'): the worker stops the job (or is replaced).",
            html.Button("Run", id="cancel-run"),
            html.Button("Cancel", id="cancel-stop", disabled=True, style={"marginLeft": 8}),
            html.Span(id="cancel-out", style={"marginLeft": 12}),
        ),
        card(
            "4. Progress bar",
            "progress=[Output('progress-bar', 'value'), Output('progress-bar', 'max')], with cancel.",
            html.Button("Run", id="progress-run"),
            html.Button("Cancel", id="progress-cancel", disabled=True, style={"marginLeft": 8}),
            html.Progress(id="progress-bar", value="0", max="10", style={**HIDDEN, "marginLeft": 12, "width": 240}),
            html.Div(id="progress-out"),
        ),
        card(
            "5. Progress graph",
            "progress=Output('progress-graph', 'figure'): a figure updated while the job runs.",
            html.Button("Run", id="graph-run"),
            html.Span(id="graph-out", style={"marginLeft": 12}),
            dcc.Graph(id="progress-graph", figure=go.Figure(), style={"height": 260}),
        ),
        card(
            "Queue",
            "Each click queues a 4 s job; with every worker busy, later jobs wait their turn (FIFO). While the "
            "page's job waits it shows its place and an estimated wait (bgcb.manager(waiting=...)); then its progress. "
            "Jobs of two users take turns: queue a few as Alice, then one as Bob, and Bob's starts next.",
            dcc.RadioItems(["Alice", "Bob"], "Alice", id="queue-user", inline=True, style={"marginBottom": 6}),
            html.Button("Queue a job", id="queue-btn"),
            html.Span(id="queue-wait", style={"marginLeft": 12}),
            html.Progress(id="queue-progress", value="0", max="8", style={"marginLeft": 12, "width": 160}),
            html.Span(id="queue-out", style={"marginLeft": 12}),
            html.Table(id="queue-table", style={"marginTop": 8, "fontFamily": "monospace"}),
            dcc.Interval(id="queue-tick", interval=500),
        ),
        card(
            "Retry later",
            "A pretend API takes one call every 4 s. A job that may not call yet asks to run again when it may "
            "(bgcb.retry_later(seconds)) and frees its worker meanwhile; its page says when it runs again. "
            "Click a few times: the calls come 4 s apart, and other examples keep running.",
            html.Button("Call the API", id="api-btn"),
            html.Span(id="api-wait", style={"marginLeft": 12}),
            html.Span(id="api-out", style={"marginLeft": 12}),
        ),
        card(
            "Errors",
            "The callback raises; on_error=show_error puts the message on the page (the worker logs the traceback).",
            html.Button("Run", id="error-btn"),
            html.Span(id="error-out", style={"marginLeft": 12}),
        ),
    ],
    style={"maxWidth": 760, "margin": "0 auto", "fontFamily": "system-ui, sans-serif"},
)


@callback(Output("simple-out", "children"), Input("simple-btn", "n_clicks"), background=True, prevent_initial_call=True)
def simple(n_clicks):
    time.sleep(2.0)
    return f"Clicked {n_clicks} times (ran in worker pid {os.getpid()})"


@callback(
    Output("disable-out", "children"),
    Input("disable-btn", "n_clicks"),
    background=True,
    running=[(Output("disable-btn", "disabled"), True, False)],
    prevent_initial_call=True,
)
def disable_while_running(n_clicks):
    time.sleep(2.0)
    return f"Clicked {n_clicks} times"


@callback(
    Output("cancel-out", "children"),
    Input("cancel-run", "n_clicks"),
    background=True,
    running=[(Output("cancel-run", "disabled"), True, False), (Output("cancel-stop", "disabled"), False, True)],
    cancel=[Input("cancel-stop", "n_clicks")],
    prevent_initial_call=True,
)
def cancellable(n_clicks):
    time.sleep(5.0)  # no progress calls: a cancel makes the pool kill and replace this worker
    return f"Finished run {n_clicks}"


@callback(
    Output("progress-out", "children"),
    Input("progress-run", "n_clicks"),
    background=True,
    running=[
        (Output("progress-run", "disabled"), True, False),
        (Output("progress-cancel", "disabled"), False, True),
        (Output("progress-out", "style"), HIDDEN, SHOWN),
        (Output("progress-bar", "style"), {**SHOWN, "marginLeft": 12, "width": 240}, {**HIDDEN, "marginLeft": 12, "width": 240}),
    ],
    cancel=[Input("progress-cancel", "n_clicks")],
    progress=[Output("progress-bar", "value"), Output("progress-bar", "max")],
    interval=250,
    prevent_initial_call=True,
)
def progress_bar(set_progress, n_clicks):
    total = 10
    for i in range(total + 1):
        set_progress((str(i), str(total)))
        time.sleep(0.5)
    return f"Clicked {n_clicks} times"


@callback(
    Output("graph-out", "children"),
    Input("graph-run", "n_clicks"),
    background=True,
    running=[(Output("graph-run", "disabled"), True, False)],
    progress=Output("progress-graph", "figure"),
    progress_default=go.Figure(),
    interval=300,
    prevent_initial_call=True,
)
def progress_graph(set_progress, n_clicks):
    total = 10
    for i in range(1, total + 1):
        figure = go.Figure(data=[go.Bar(x=[i], y=["progress"], orientation="h")])
        figure.update_layout(xaxis={"range": [0, total]}, height=240, margin={"l": 70, "r": 20, "t": 20, "b": 30})
        set_progress(figure)
        time.sleep(0.4)
    return f"Clicked {n_clicks} times"


@callback(
    Output("queue-out", "children"),
    Input("queue-btn", "n_clicks"),
    State("queue-user", "value"),
    background=True,
    manager=queue_manager,
    progress=Output("queue-progress", "value"),
    progress_default="0",
    on_error=lambda err: set_props("queue-wait", {"children": str(err).splitlines()[0].split("bgcb: ", 1)[-1]}),
    prevent_initial_call=True,
)
def queued_job(set_progress, n_clicks, user):
    for step in range(1, 9):
        time.sleep(0.5)
        set_progress(str(step))
    return f"Job {n_clicks} done ({user})"


@callback(
    Output("api-out", "children"),
    Input("api-btn", "n_clicks"),
    background=True,
    manager=api_manager,
    prevent_initial_call=True,
)
def call_api(n_clicks):
    """Call the pretend API if its window is open, else run again once it opens (no worker waits)."""
    now = time.time()
    try:  # one clock for every worker process, as the API's own limit would be (two jobs may rarely both pass)
        with open(API_CLOCK) as clock:
            last = float(clock.read() or 0)
    except (OSError, ValueError):
        last = 0.0
    if now - last < API_EVERY:
        bgcb.retry_later(API_EVERY - (now - last) + 0.05, "the API takes one call every 4 s")
    with open(API_CLOCK, "w") as clock:
        clock.write(str(now))
    return f"Call {n_clicks} answered at {time.strftime('%H:%M:%S')}"


def show_error(err):
    """Dash's error carries the worker's traceback after the message: the page shows the message."""
    set_props("error-out", {"children": f"Failed: {str(err).splitlines()[0]}"})


@callback(
    Output("error-out", "children"),
    Input("error-btn", "n_clicks"),
    background=True,
    on_error=show_error,
    prevent_initial_call=True,
)
def failing(n_clicks):
    time.sleep(0.5)
    raise ValueError(f"run {n_clicks} failed on purpose")


@callback(Output("queue-table", "children"), Input("queue-tick", "n_intervals"))
def show_queue(_):
    """The backend's jobs with their state and place in the queue (``bgcb jobs``)."""
    listing = manager.backend.jobs() or []
    now = time.time()
    rows = [html.Tr([html.Th("job"), html.Th("owner"), html.Th("state"), html.Th("queue position"), html.Th("age")])]
    for job_id, status in listing:
        position = "" if status.position is None else f"#{status.position + 1}"
        age = f"{now - (status.submitted_at or now):.1f} s"
        cells = [job_id[:8] + "…", status.owner or "", status.state.value, position, age]
        rows.append(html.Tr([html.Td(cell) for cell in cells]))
    if len(rows) == 1:
        rows.append(html.Tr([html.Td("(no jobs queued or running)", colSpan=5)]))
    return rows


if __name__ == "__main__":
    app.run(host="127.0.0.1", port=int(os.environ.get("DEMO_PORT", "8050")), debug=False)
