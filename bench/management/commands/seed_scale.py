"""`manage.py seed_scale`, written in bench/scale/seed_scale.py."""

from bench.scale.seed_scale import Command

__all__ = ["Command"]
