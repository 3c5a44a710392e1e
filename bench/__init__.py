"""Benchmarks, load clients and scale seeders of the hub: run from the repository, never shipped.

Each folder is what it measures (archive/, worklists/, analytics/, mdt/, reporting/), scale/
is the region-sized world several of them run on, harness/ is what every bench stands on.
day/ is the scripted working day and soak on `make run`'s own stack (`make soak`): no
Django settings, HTTP and WebSocket only.
The product imports nothing from here; settings install this app only where it exists.
"""
