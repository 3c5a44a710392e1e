"""`manage.py bench_analytics`, written in bench/analytics/bench_analytics.py."""

from bench.analytics.bench_analytics import Command

__all__ = ["Command"]
