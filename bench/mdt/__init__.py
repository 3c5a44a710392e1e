"""MDT room benchmarks: fan-out latency and resync, with the load client the tests share."""
