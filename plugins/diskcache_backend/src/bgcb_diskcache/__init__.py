"""bgcb-diskcache (in progress)."""
