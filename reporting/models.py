"""Models of the reporting app (built by a later issue)."""
