"""Template tags of the referrals app."""
