"""``python -m bgcb_testing.conformance NAME [options] [-- pytest args]``."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence

from .config import ENV_PREFIX


def _option(text: str) -> tuple[str, object]:
    key, sep, raw = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key, json.loads(raw)
    except ValueError:
        return key, raw


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bgcb_testing.conformance",
        description="Run bgcb's conformance kit against the backend installed under NAME.",
        epilog="Arguments after -- go to pytest (e.g. -- -x -k cancel).",
    )
    parser.add_argument("backend", metavar="NAME", help="entry-point name in the group bgcb.backends")
    parser.add_argument("-o", "--option", type=_option, action="append", default=[], help="backend option KEY=VALUE (JSON)")
    parser.add_argument(
        "-w", "--worker-option", type=_option, action="append", default=[], help="option for spawned workers only"
    )
    parser.add_argument("--workers", type=int, help="concurrency bound the backend promises (default: its workers option)")
    parser.add_argument("--no-fifo", action="store_true", help="the backend does not promise FIFO order")
    parser.add_argument("--app-option", help="backend option that names the module workers import")
    parser.add_argument("--spawn-workers", type=int, default=0, help="start N `bgcb worker` processes for the kit")
    parser.add_argument("--kill-worker", help="'pid' (SIGKILL the job's process) or module:callable; enables the check")
    argv = list(sys.argv[1:] if argv is None else argv)
    extra: list[str] = []
    if "--" in argv:
        at = argv.index("--")
        argv, extra = argv[:at], argv[at + 1 :]
    args = parser.parse_args(argv)
    env = {
        "BACKEND": args.backend,
        "OPTIONS": json.dumps(dict(args.option)),
        "WORKERS": str(args.workers or ""),
        "FIFO": "0" if args.no_fifo else "1",
        "APP_OPTION": args.app_option or "",
        "SPAWN_WORKERS": str(args.spawn_workers),
        "WORKER_OPTIONS": json.dumps(dict(args.worker_option)),
        "KILL_WORKER": args.kill_worker or "",
    }
    os.environ.update({ENV_PREFIX + k: v for k, v in env.items()})
    import pytest

    return int(
        pytest.main(
            [
                "--pyargs",
                "bgcb_testing.conformance",
                "--bgcb-backend",
                args.backend,
                "-p",
                "no:cacheprovider",
                "-W",
                "ignore::pytest.PytestAssertRewriteWarning",
                *extra,
            ]
        )
    )


if __name__ == "__main__":
    sys.exit(main())
