"""`manage.py bench_identity`, written in bench/identity/bench_identity.py."""

from bench.identity.bench_identity import Command

__all__ = ["Command"]
