"""The ``bgcb`` command: ``backends``, ``worker``, ``jobs``, ``doctor``."""

from __future__ import annotations

import argparse
import importlib
import os
import re
import sys
import time
from collections.abc import Sequence

from . import provider
from .errors import BgcbError, ConfigurationError


def _backends(args: argparse.Namespace) -> int:
    found = provider.installed()
    try:
        chosen = provider.selected_name(args.backend)
    except BgcbError:
        chosen = None
    if not found:
        print('No backend installed. Install one: pip install "bgcb[diskcache]"')
        return 1
    width = max(len(n) for n in found)
    for name, info in found.items():
        mark = "*" if name == chosen else " "
        print(f"{mark} {name:<{width}}  {info.distribution} {info.version}")
    if chosen and chosen not in found:
        print(f"selected backend '{chosen}' is not installed: pip install bgcb-{chosen}")
        return 1
    if chosen is None:
        print(f"no backend selected and '{provider.DEFAULT_BACKEND}' is not installed: set {provider.ENV_BACKEND}=<name>")
        return 1
    print(f"(* selected: {chosen}; choose with {provider.ENV_BACKEND}=<name>)")
    return 0


def _import_app(module: str) -> None:
    sys.path.insert(0, os.getcwd())
    importlib.import_module(module)


_PASSWORD = re.compile(r"(://[^:/@]*:)[^@/]+@")


def _redact(value: object) -> object:
    """A URL option without its password (``redis://:secret@host`` -> ``redis://:***@host``)."""
    return _PASSWORD.sub(r"\1***@", value) if isinstance(value, str) else value


def _describe(backend: provider.Backend) -> str:
    own = ", ".join(f"{k}={_redact(v)!r}" for k, v in sorted(backend.options.items()))
    return f"{backend.name} ({own or 'default options'})"


def worker_backend(app: str, name: str | None) -> provider.Backend:
    """The backend ``bgcb worker APP`` serves: the one the app's managers configured.

    The app is imported first, as a worker (a backend may take jobs as soon
    as it is configured, and every callback must be registered by then). Like
    ``celery -A app worker``, the worker then uses the app's own backend
    instance and options; ``name`` (``--backend`` or ``$BGCB_BACKEND``)
    narrows the choice, and is loaded from the environment when the app made
    no manager on import.
    """
    with provider.role("worker") as made:
        _import_app(app)
        if name:
            made = [b for b in made if b.name == name]
        if len(made) == 1:
            return made[0]
        if len(made) > 1:
            listing = "\n  ".join(_describe(b) for b in made)
            raise ConfigurationError(
                f"bgcb: {app} configures {len(made)} bgcb backends:\n  {listing}\n"
                "A worker serves one: choose with --backend NAME; for two configurations of one backend, "
                "give each its own app module (or a worker started by the backend's own tools)."
            )
        if not name:
            raise ConfigurationError(
                f"bgcb: importing {app} made no bgcb manager, so there is no backend to serve. Create the "
                "manager at import time (app = Dash(..., background_callback_manager=bgcb.manager(...))), "
                f"or name the backend with --backend NAME or {provider.ENV_BACKEND}=NAME (its options then "
                "come from BGCB_<BACKEND>_<OPTION> variables)."
            )
        return provider.load(name)


def _worker(args: argparse.Namespace) -> int:
    explicit = args.backend or os.environ.get(provider.ENV_BACKEND, "").strip() or None
    backend = worker_backend(args.app, explicit)
    print(f"bgcb worker: serving {_describe(backend)} for {args.app}", file=sys.stderr)
    if not backend.run_worker(args.app):
        print(f"backend '{backend.name}' has no worker to start", file=sys.stderr)
        return 1
    return 0


def _storage(args: argparse.Namespace) -> provider.Backend:
    """A backend instance for reading the store only (``bgcb jobs``, ``bgcb doctor``)."""
    with provider.role("cli"):
        return provider.load(args.backend, fresh=True)


def _jobs(args: argparse.Namespace) -> int:
    backend = _storage(args)
    listing = backend.jobs()
    if listing is None:
        print(f"backend '{backend.name}' cannot list its jobs", file=sys.stderr)
        return 1
    now = time.time()
    print(f"{'JOB':<26} {'STATE':<10} {'POS':>4} {'AGE':>8}")
    for job_id, status in listing:
        age = now - (status.submitted_at or now)
        pos = "" if status.position is None else str(status.position)
        print(f"{job_id:<26} {status.state.value:<10} {pos:>4} {age:>7.1f}s")
    backend.close()
    return 0


def _doctor(args: argparse.Namespace) -> int:
    import dash

    print(f"dash {dash.__version__}")
    print(f"python {sys.version.split()[0]}")
    code = _backends(args)
    if code:
        return code
    backend = _storage(args)
    print(f"backend '{backend.name}' loaded with options:")
    for key, value in sorted(backend.all_options.items()):
        print(f"  {key} = {_redact(value)!r}")
    backend.close()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bgcb", description="Background callbacks for Dash on pluggable backends.")
    parser.add_argument("--backend", "-b", help=f"backend name (default: ${provider.ENV_BACKEND} or diskcache)")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("backends", help="list installed backends and the selected one").set_defaults(func=_backends)
    worker = sub.add_parser("worker", help="run a worker for the app in APP_MODULE")
    worker.add_argument("app", metavar="APP_MODULE", help="module that defines the Dash app (e.g. app or pkg.app)")
    worker.set_defaults(func=_worker)
    sub.add_parser("jobs", help="list queued and running jobs").set_defaults(func=_jobs)
    sub.add_parser("doctor", help="check the installation and configuration").set_defaults(func=_doctor)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except BgcbError as exc:
        print(str(exc), file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
