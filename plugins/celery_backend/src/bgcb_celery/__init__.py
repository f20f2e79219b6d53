"""bgcb-celery (in progress)."""
