"""The benchmark harness: a real app under gunicorn, driven over HTTP as dash-renderer drives it.

``python -m harness`` (from benchmarks/) or ``nox -s bench``; see benchmarks/README.md.
"""
