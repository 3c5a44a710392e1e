"""Commission analytics benchmarks: the dashboard API and the rollup refresh."""
