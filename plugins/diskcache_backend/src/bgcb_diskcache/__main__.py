"""``python -m bgcb_diskcache pool|worker CONFIG_JSON``: the worker pool a web
process starts for itself, and the workers a portable pool spawns
(see :mod:`bgcb_diskcache.pool`)."""

from __future__ import annotations

import sys

from .pool import main, worker_main

if __name__ == "__main__":
    command = sys.argv[1:2]
    if command == ["pool"]:
        sys.exit(main(sys.argv[2:]))
    if command == ["worker"] and len(sys.argv) == 3:
        sys.exit(worker_main(sys.argv[2:]))
    sys.exit("usage: python -m bgcb_diskcache pool|worker CONFIG_JSON (started by the backend; use `bgcb worker APP_MODULE`)")
