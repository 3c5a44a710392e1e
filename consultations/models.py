"""Models of the consultations app (built by a later issue)."""
