"""Routing: which pool and reader a referral goes to, and why (rules, pools, rosters)."""
