"""Benchmarks, load clients and scale seeders of the hub: run from the repository, never shipped.

Each folder is what it measures (archive/, worklists/, analytics/, mdt/, reporting/), scale/
is the region-sized world several of them run on, harness/ is what every bench stands on.
The product imports nothing from here; settings install this app only where it exists.
"""
