"""Archive benchmarks: STOW-RS, the edge gateway, QIDO-RS, WADO-RS, ingest memory."""
