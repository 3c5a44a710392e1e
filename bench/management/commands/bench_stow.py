"""`manage.py bench_stow`, written in bench/archive/bench_stow.py."""

from bench.archive.bench_stow import Command

__all__ = ["Command"]
