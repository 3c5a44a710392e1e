"""Routing: which pool and reader a referral goes to, and why, from the alliance's rules,
pools and rosters (alliance/models.py, where its administrators configure them)."""
