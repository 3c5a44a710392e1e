"""Models of the referrals app (built by a later issue)."""
