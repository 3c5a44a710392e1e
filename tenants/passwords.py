"""Passwords: the history hasher of the test suite (the policy itself is in settings)."""

from __future__ import annotations

from django_password_validators.password_history.hashers import HistoryHasher


class QuickHistoryHasher(HistoryHasher):
    """The suite's password history: one round instead of 200,000 per user it creates (the
    same speed-up it takes for the passwords themselves)."""

    iterations = 1
