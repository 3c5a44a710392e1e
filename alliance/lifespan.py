"""The web process's ASGI lifespan: at shutdown, once uvicorn has closed every socket, wait for
the work those sockets left queued (the MDT joins' audit rows, written in batches beside the
rooms) so that a restart does not drop them."""

from __future__ import annotations

import logging
from typing import Any

logger = logging.getLogger(__name__)


async def lifespan(scope: dict[str, Any], receive: Any, send: Any) -> None:
    from consultations.fanout import audits_written  # after Django is set up

    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            try:
                await audits_written()
            except Exception as exc:
                logger.exception("queued audit rows not written at shutdown")
                await send({"type": "lifespan.shutdown.failed", "message": str(exc)})
                return
            await send({"type": "lifespan.shutdown.complete"})
            return
