"""Signals of the alliance domain, for the apps above it to act on (it imports none of them)."""

from __future__ import annotations

from django.dispatch import Signal

# Sent with `alliance=` once a new alliance exists (created in the admin or by the demo):
# reporting gives it the starter report templates.
alliance_created = Signal()
