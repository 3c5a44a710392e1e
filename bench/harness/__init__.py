"""What every `manage.py bench_*` command stands on: its base, processes, timing, profiles."""
