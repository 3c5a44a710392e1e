"""Scale benchmarks of the referral side: a seeded alliance-sized world and its figures."""
