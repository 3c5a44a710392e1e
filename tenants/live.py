"""The single path for live events: every push to open pages goes out through `publish`.

Events are sent only after the surrounding transaction commits, so a page never hears of
a row that a rollback then takes back (Zulip's send_event_on_commit).

Sync code (views, services, Celery tasks) hands each event to one long-lived event loop on
a background thread of the process. `async_to_sync` would start a fresh loop per event,
and the Redis channel layer keeps its connections per loop: every push paid for a new
connection (6-67 ms measured under load), four times per routed referral.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

from channels import DEFAULT_CHANNEL_LAYER
from channels.layers import channel_layers, get_channel_layer
from django.db import transaction

logger = logging.getLogger(__name__)


def user_group(user_id: int) -> str:
    return f"user.{user_id}"


def institution_group(institution_id: int) -> str:
    return f"institution.{institution_id}"


SEND_TIMEOUT = 5.0  # seconds a caller waits for one push before giving up on it


class _Sender:
    """One event loop per process, on a daemon thread, with a channel layer of its own.

    Its own layer object: the consumers' layer belongs to the server's loop, and closing
    one loop's pools must never reach into the other's.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._layers: dict[str, Any] = {}
        self._pid = 0

    def get(self, alias: str) -> tuple[asyncio.AbstractEventLoop, Any]:
        with self._lock:
            # A forked worker child inherits the object but not the thread: start anew.
            if self._loop is None or self._pid != os.getpid():
                loop = asyncio.new_event_loop()
                threading.Thread(
                    target=loop.run_forever, name="hub-live-sender", daemon=True
                ).start()
                self._layers = {}
                self._loop, self._pid = loop, os.getpid()
            if alias not in self._layers:
                self._layers[alias] = channel_layers.make_backend(alias)
            return self._loop, self._layers[alias]


_sender = _Sender()


def _send(group: str, message: dict[str, Any], alias: str = DEFAULT_CHANNEL_LAYER) -> None:
    if get_channel_layer(alias) is None:
        return
    loop, layer = _sender.get(alias)
    future = asyncio.run_coroutine_threadsafe(layer.group_send(group, message), loop)
    try:
        future.result(timeout=SEND_TIMEOUT)
    except FutureTimeout:
        future.cancel()
        logger.warning("live event to %s not sent within %.0f s", group, SEND_TIMEOUT)
    except Exception:  # a live push is best effort: the row is already committed
        logger.exception("live event to %s could not be sent", group)


def publish(
    group: str, event: str, payload: dict[str, Any], *, alias: str = DEFAULT_CHANNEL_LAYER
) -> None:
    """Send `event` with `payload` to every socket in `group`, once the transaction commits
    (`alias`: the channel layer; the MDT rooms have their own)."""
    message = {"type": "live.event", "event": event, "payload": payload}
    transaction.on_commit(lambda: _send(group, message, alias))


def pool_group(pool_id: int) -> str:
    """Every reader of a pool: their worklist pages listen here."""
    return f"pool.{pool_id}"
