"""The app every side serves, built from the environment (gunicorn imports ``harness.app:server``).

``BENCH_SIDE`` picks the manager: ``dash-diskcache`` and ``dash-celery`` (Dash's
own managers), ``bgcb-diskcache`` and ``bgcb-celery``. ``BENCH_HOLD`` is
bgcb's ``hold`` seconds, ``BENCH_REDIS_URL`` the Redis of the Celery sides,
``BENCH_DIR`` the diskcache directory of the diskcache sides.
"""

from __future__ import annotations

import os
import time

from dash import Dash, Input, Output, State, callback, html

SIDE = os.environ.get("BENCH_SIDE", "bgcb-diskcache")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "")
DIRECTORY = os.environ.get("BENCH_DIR", "")
HOLD = float(os.environ.get("BENCH_HOLD") or 0)

celery_app = None
if SIDE == "dash-diskcache":
    import diskcache
    from dash import DiskcacheManager

    store = diskcache.Cache(DIRECTORY)
    manager = DiskcacheManager(store)
    cache_manager = DiskcacheManager(store, cache_by=[lambda: "bench"], expire=3600)
elif SIDE == "dash-celery":
    from celery import Celery
    from dash import CeleryManager

    celery_app = Celery(__name__, broker=REDIS_URL, backend=REDIS_URL)
    celery_app.conf.update(worker_prefetch_multiplier=1)
    manager = CeleryManager(celery_app)
    cache_manager = CeleryManager(celery_app, cache_by=[lambda: "bench"], expire=3600)
else:
    import bgcb

    backend = SIDE.removeprefix("bgcb-")
    options = (
        {"broker_url": REDIS_URL, "result_url": REDIS_URL, "concurrency": 2}
        if backend == "celery"
        else {"directory": DIRECTORY, "workers": 2, "app": __name__}
    )
    manager = bgcb.manager(backend, hold=HOLD, **options)
    cache_manager = bgcb.manager(backend, hold=HOLD, cache_by=[lambda: "bench"], expire=3600, **options)
    if backend == "celery":
        from bgcb_celery import celery_app_of

        celery_app = celery_app_of(manager)

#: ~N MB of live Python objects in each web process (``BENCH_BALLAST_MB``), like a data app's
#: loaded frames: what a fork per job (Dash's DiskcacheManager) has to copy and collect.
BALLAST_MB = int(os.environ.get("BENCH_BALLAST_MB") or 0)
in_web = os.environ.get("BENCH_WEB") == "1" and not os.environ.get("BGCB_DISKCACHE_IN_POOL")
ballast = [(float(i), str(i)) for i in range(BALLAST_MB * 6_000)] if BALLAST_MB and in_web else []

# Every side dispatches the same way: Dash turns async dispatch on by itself wherever asgiref is
# installed (bgcb's environment has it, the Dash CeleryManager's does not), and on Flask that costs
# each request a new event loop (about 1 ms of CPU), whatever the manager.
app = Dash(__name__, background_callback_manager=manager, use_async=False)
server = app.server
#: One callback per job length, as an app has: each callback's jobs take about the same time.
#: ``go-<name>`` runs a job that sleeps that long and answers ``out-<name>`` with its n_clicks.
JOB_SECONDS = {"000": 0.0, "005": 0.05, "001": 0.01, "03": 0.3, "12": 1.2, "35": 3.5}
#: Seconds of CPU each ``cpu-go`` job burns (the CPU-bound burst).
CPU_SECONDS = float(os.environ.get("BENCH_CPU_SECONDS") or 0.5)
app.layout = html.Div(
    [html.Div([html.Button(id=f"go-{name}"), html.Div(id=f"out-{name}")]) for name in JOB_SECONDS]
    + [
        html.Button(id="cache-go"),
        html.Div(id="cache-key"),
        html.Div(id="cache-out"),
        html.Button(id="cpu-go"),
        html.Div(id="cpu-out"),
        html.Button(id="plain-go"),
        html.Div(id="plain-out"),
    ]
)


def _job(seconds: float):
    def job(n_clicks):
        time.sleep(seconds)
        return n_clicks

    return job


for _name, _seconds in JOB_SECONDS.items():
    job = _job(_seconds)
    job.__name__ = f"job_{_name}"  # Dash keys background callbacks by the function's source and id
    callback(Output(f"out-{_name}", "children"), Input(f"go-{_name}", "n_clicks"), background=True, prevent_initial_call=True)(
        job
    )


@callback(
    Output("cache-out", "children"),
    Input("cache-go", "n_clicks"),
    State("cache-key", "children"),
    background=True,
    manager=cache_manager,
    cache_args_to_ignore=[0],
    prevent_initial_call=True,
)
def cached(n_clicks, key):
    """Same ``key``, same cache entry: after the first run every click is a cache hit."""
    return key


@callback(Output("plain-out", "children"), Input("plain-go", "n_clicks"), prevent_initial_call=True)
def plain(n_clicks):
    """The floor: a plain callback, answered in the request."""
    return n_clicks


@callback(Output("cpu-out", "children"), Input("cpu-go", "n_clicks"), background=True, prevent_initial_call=True)
def cpu(n_clicks):
    """Burns CPU_SECONDS of CPU time: jobs that compete for the job workers' cores."""
    end = time.process_time() + CPU_SECONDS
    x = 0
    while time.process_time() < end:
        x += sum(range(1000))
    return n_clicks
