"""The identity benchmark: a synthetic alliance with realistic identity errors, linked by the
master patient index, scored against its ground truth (precision and recall)."""
