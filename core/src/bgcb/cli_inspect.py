"""``bgcb jobs`` and ``bgcb doctor``: what a store holds, and whether everything a deployment needs is there.

Both read the store of the app named on the command line (``bgcb jobs
APP_MODULE``: the backend and options its managers configure), or else of
the backend named by ``--backend``/``$BGCB_BACKEND`` with options from the
environment; both say which store they read, and neither creates one.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from . import provider
from .checks import Check, dash_check
from .cli import app_backend, app_module, explicit_backend, redact
from .errors import BgcbError


def add_commands(sub: Any, common: argparse.ArgumentParser) -> None:
    jobs = sub.add_parser("jobs", parents=[common], help="list queued and running jobs")
    jobs.add_argument("app", metavar="APP_MODULE", nargs="?", help="read the store this app's managers use")
    jobs.add_argument("--watch", "-w", nargs="?", type=float, const=1.0, metavar="SECONDS", help="refresh every SECONDS (1)")
    jobs.set_defaults(func=jobs_command)
    page = sub.add_parser("dashboard", parents=[common], help="serve the live jobs page for an app (queued, running, recent)")
    page.add_argument("app", metavar="APP_MODULE", help="the app whose backend to show")
    page.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    page.add_argument("--port", type=int, default=8051, help="port (8051)")
    page.add_argument(
        "--allow-cancel",
        choices=["local", "anyone", "no"],
        default="local",
        help="who may cancel jobs from the page: requests from this machine (default), anyone who reaches it, or no one",
    )
    page.set_defaults(func=dashboard_command)
    doctor = sub.add_parser("doctor", parents=[common], help="check the installation, the store and the workers")
    doctor.add_argument("app", metavar="APP_MODULE", nargs="?", help="check the backend this app's managers use")
    doctor.set_defaults(func=doctor_command)


def storage(args: argparse.Namespace) -> provider.Backend:
    """The backend to read, in the role ``cli`` (it starts no workers and creates no store)."""
    if getattr(args, "app", None):
        return app_backend(app_module(args.app), explicit_backend(args), role="cli")
    with provider.role("cli"):
        return provider.load(args.backend, fresh=True)


def jobs_command(args: argparse.Namespace) -> int:
    backend = storage(args)
    try:
        watch = getattr(args, "watch", None)
        while True:
            if watch:
                print("\033[H\033[J", end="")  # clear the terminal: one screen per refresh
            if not _list_jobs(backend):
                return 1
            if not watch:
                return 0
            print(f"\n(every {watch:g} s; Ctrl-C to stop)", flush=True)
            time.sleep(max(0.1, watch))
    except KeyboardInterrupt:
        return 0
    finally:
        backend.close()


def _list_jobs(backend: provider.Backend) -> bool:
    where = backend.describe().get("where")
    print(f"backend {backend.name}" + (f", {where}" if where else ""))
    listing = backend.jobs()
    if listing is None:
        print(f"backend '{backend.name}' cannot list its jobs", file=sys.stderr)
        return False
    now = time.time()
    print(f"{'JOB':<26} {'STATE':<10} {'POS':>4} {'AGE':>8}  OWNER")
    for job_id, status in listing:
        age = now - (status.submitted_at or now)
        pos = "" if status.position is None else str(status.position)
        print(f"{job_id:<26} {status.state.value:<10} {pos:>4} {age:>7.1f}s  {status.owner or '-'}")
    if not listing:
        print("(no queued or running jobs)")
    return True


def dashboard_command(args: argparse.Namespace) -> int:
    """The live jobs page for the app's backend, on a server of its own."""
    from .jobspage import JobsPage
    from .routes import is_local, serve

    backend = storage(args)
    allow = {"local": is_local, "anyone": lambda request: True, "no": lambda request: False}[args.allow_cancel]
    print(f"bgcb dashboard: jobs of {backend.name} on http://{args.host}:{args.port}/ (Ctrl-C to stop)", file=sys.stderr)
    try:
        serve(JobsPage(lambda: [backend], allow), args.host, args.port)
    except KeyboardInterrupt:
        pass
    finally:
        backend.close()
    return 0


def doctor_command(args: argparse.Namespace) -> int:
    """Versions, the backend's effective options and its checks; exit 1 when any check fails."""
    import dash

    from . import __version__

    checks = [Check(True, f"bgcb {__version__}, python {sys.version.split()[0]}"), dash_check(dash.__version__)]
    backend = None
    try:
        backend = storage(args)
    except BgcbError as exc:
        checks.append(Check(False, "backend loads", str(exc)))
    else:
        info = f" ({backend.info.distribution} {backend.info.version})" if backend.info else ""
        uses = _requirement_versions(backend.info.distribution) if backend.info else ""
        checks.append(Check(True, f"backend {backend.name}{info}" + (f", with {uses}" if uses else "")))
    try:
        if backend is not None:
            found = backend.describe()
            if found.get("where"):
                print(f"backend {backend.name}: {found['where']}")
            print("options in effect:")
            for key, value in sorted(found.items()):
                if key != "where":
                    print(f"  {key} = {redact(value)!r}")
            checks += backend.check()
    finally:
        if backend is not None:
            backend.close()
    for check in checks:
        print(check.line())
    failed = [c for c in checks if not c.ok]
    print(f"{len(failed)} problem(s)" if failed else "all checks passed")
    return 1 if failed else 0


def _requirement_versions(distribution: str) -> str:
    """The installed versions of what a backend's distribution requires, bgcb and Dash aside
    (``celery 5.7.0, kombu 5.7.1, redis 8.0.0``): what a bug report needs."""
    import re
    from importlib import metadata

    found = []
    for requirement in metadata.requires(distribution) or []:
        if "extra ==" in requirement:
            continue
        name = re.split(r"[\s\[<>=!~;]", requirement, maxsplit=1)[0]
        if name.lower() in ("bgcb", "dash"):
            continue
        try:
            found.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            found.append(f"{name} (missing)")
    return ", ".join(found)
