"""``python -m bgcb_diskcache pool CONFIG_JSON``: the worker pool a web
process starts for itself (see :func:`bgcb_diskcache.pool.main`)."""

from __future__ import annotations

import sys

from .pool import main

if __name__ == "__main__":
    if sys.argv[1:2] != ["pool"]:
        sys.exit("usage: python -m bgcb_diskcache pool CONFIG_JSON (started by the backend; use `bgcb worker APP_MODULE`)")
    sys.exit(main(sys.argv[2:]))
