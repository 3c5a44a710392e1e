"""Project wiring (settings, urls, asgi, Celery) and the alliance domain: tiers, policies."""

from .celery import app as celery_app

__all__ = ["celery_app"]
