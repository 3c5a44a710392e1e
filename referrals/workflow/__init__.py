"""Referrals: the state machine, its services, notifications, pages, API and live socket."""
