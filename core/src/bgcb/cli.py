"""The ``bgcb`` command: ``backends``, ``worker``, ``jobs``, ``doctor`` (the last two in :mod:`bgcb.cli_inspect`)."""

from __future__ import annotations

import argparse
import importlib
import os
import re
import sys
from collections.abc import Sequence
from importlib import metadata

from . import provider
from .defaults import LIFECYCLE_OPTIONS
from .errors import BgcbError, ConfigurationError
from .hookspecs import Role
from .options import env_var


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


def app_module(text: str) -> str:
    """``APP_MODULE`` as given, or a one-line error saying what to type instead."""
    given = text.strip()
    if ":" in given:
        module = given.split(":", 1)[0]
        raise ConfigurationError(
            f"bgcb: give the module that defines the app, without ':{given.split(':', 1)[1]}': bgcb worker {module}"
        )
    if given.endswith(".py") or os.sep in given or "/" in given:
        folder, stem = os.path.split(given[:-3] if given.endswith(".py") else given)
        where = f"cd {folder} && " if folder else ""
        raise ConfigurationError(f"bgcb: give the app's module name, not its file: {where}bgcb worker {stem}")
    if not re.fullmatch(r"[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*", given):
        raise ConfigurationError(f"bgcb: {given!r} is not a module name; give the module that defines the app: bgcb worker app")
    return given


def import_app(module: str) -> None:
    """Import the app from the current directory; a module that is not there is a one-line error."""
    sys.path.insert(0, os.getcwd())
    try:
        importlib.import_module(module)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if missing and (module == missing or module.startswith(missing + ".")):
            raise ConfigurationError(
                f"bgcb: no module {module!r} in {os.getcwd()}: run the command in the directory that holds "
                f"{module.split('.')[0]}.py (or the package), or give its dotted path"
            ) from None
        raise  # the app itself imports something that is missing: its own traceback says what


_PASSWORD = re.compile(r"(://[^:/@]*:)[^@/]+@")


def redact(value: object) -> object:
    """A URL option without its password (``redis://:secret@host`` -> ``redis://:***@host``)."""
    return _PASSWORD.sub(r"\1***@", value) if isinstance(value, str) else value


def describe(backend: provider.Backend) -> str:
    own = ", ".join(f"{k}={redact(v)!r}" for k, v in sorted(backend.options.items()))
    return f"{backend.name} ({own or 'default options'})"


def app_backend(app: str, name: str | None, role: Role = "worker") -> provider.Backend:
    """The backend the app's managers configured when imported in ``role`` (``bgcb worker APP``, ``bgcb jobs APP``).

    Like ``celery -A app worker``, the worker uses the app's own backend
    instance and options; ``name`` (``--backend`` or ``$BGCB_BACKEND``)
    narrows the choice, and is loaded from the environment when the app made
    no manager on import.
    """
    with provider.role(role) as made:
        import_app(app)
        if name:
            made = [b for b in made if b.name == provider.canonical(name)]
        # Managers that differ only in the core's lifecycle settings (cancel_grace, ttls) share a store and workers.
        unique: dict[tuple[str, str], provider.Backend] = {}
        for backend in made:
            unique.setdefault((backend.name, repr(sorted(backend.options.items()))), backend)
        made = list(unique.values())
        if len(made) == 1:
            return made[0]
        if len(made) > 1:
            listing = "\n  ".join(describe(b) for b in made)
            raise ConfigurationError(
                f"bgcb: {app} configures {len(made)} bgcb backends:\n  {listing}\n"
                "Choose one with --backend NAME; for two configurations of one backend, "
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


def explicit_backend(args: argparse.Namespace) -> str | None:
    return args.backend or os.environ.get(provider.ENV_BACKEND, "").strip() or None


def _worker(args: argparse.Namespace) -> int:
    module = app_module(args.app)
    backend = app_backend(module, explicit_backend(args))
    print(f"bgcb worker: serving {describe(backend)} for {module}", file=sys.stderr)
    from . import observers

    if args.log_events:
        import logging

        from .eventlog import log as event_log

        event_log.setLevel(logging.INFO)
        if not logging.getLogger().handlers:
            logging.basicConfig(level=logging.INFO, format="%(message)s")
    observers.worker_process(args.metrics_port)  # observers that expose metrics serve them on --metrics-port
    if not backend.run_worker(module):
        print(f"backend '{backend.name}' has no worker to start", file=sys.stderr)
        return 1
    return 0


def options_help() -> str:
    """Every installed backend's options: keyword, environment variable, default (``bgcb worker --help``)."""
    lines = ["options (bgcb.manager(NAME=...) in the app, or the environment variable; the app's values win):"]
    for name, info in provider.installed().items():
        try:
            plugin = info.plugin()
            own = dict(plugin.bgcb_options()) if hasattr(plugin, "bgcb_options") else {}
        except Exception as exc:  # a broken plugin: say so, list the others
            lines.append(f"  {name}: cannot list its options ({exc!r})")
            continue
        lines.append(f"  backend {name} ({info.distribution} {info.version}):")
        for option, default in {**own, **LIFECYCLE_OPTIONS}.items():
            lines.append(f"    {option:<20} {env_var(name, option):<36} default {redact(default)!r}")
    return "\n".join(lines)


def _version() -> str:
    parts = [f"bgcb {metadata.version('bgcb')}"]
    parts += [f"{i.distribution} {i.version}" for i in provider.installed().values()]
    return ", ".join(parts)


def parser(with_options: bool = False) -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="bgcb", description="Background callbacks for Dash on pluggable backends.")
    root.add_argument("--version", action="store_true", help="print the versions of bgcb and its backends")
    root.add_argument("--backend", "-b", help=f"backend name (default: ${provider.ENV_BACKEND} or diskcache)")
    common = argparse.ArgumentParser(add_help=False)  # -b also after the subcommand
    common.add_argument("--backend", "-b", default=argparse.SUPPRESS, help="backend name (as before the subcommand)")
    sub = root.add_subparsers(dest="command")
    sub.add_parser("backends", parents=[common], help="list installed backends and the selected one").set_defaults(func=_backends)
    worker = sub.add_parser(
        "worker",
        parents=[common],
        help="run the workers for the app in APP_MODULE",
        epilog=options_help() if with_options else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    worker.add_argument("app", metavar="APP_MODULE", help="module that defines the Dash app (app for app.py, or pkg.app)")
    worker.add_argument(
        "--metrics-port",
        type=int,
        default=None,
        help="serve the installed observers' metrics on this port (bgcb-prometheus: /metrics)",
    )
    worker.add_argument(
        "--log-events", action="store_true", help="log one line per job transition (logger bgcb.events; BGCB_LOG_EVENTS=1)"
    )
    worker.set_defaults(func=_worker)
    from . import cli_inspect

    cli_inspect.add_commands(sub, common)
    return root


def main(argv: Sequence[str] | None = None) -> int:
    given = list(sys.argv[1:] if argv is None else argv)
    root = parser(with_options="worker" in given and ("-h" in given or "--help" in given))
    args = root.parse_args(given)
    if args.version:
        print(_version())
        return 0
    if not args.command:
        root.print_usage(sys.stderr)
        print("bgcb: choose a command: backends, worker, jobs or doctor (bgcb COMMAND --help)", file=sys.stderr)
        return 2
    try:
        return int(args.func(args))
    except BgcbError as exc:
        print(str(exc), file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
