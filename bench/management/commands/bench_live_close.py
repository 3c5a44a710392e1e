"""`manage.py bench_live_close`, written in bench/live_close/bench_live_close.py."""

from bench.live_close.bench_live_close import Command

__all__ = ["Command"]
