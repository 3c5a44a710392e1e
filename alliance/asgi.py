"""ASGI entry point: HTTP through Django, WebSockets through Channels' router."""

import gc
import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "alliance.settings")
django_asgi_app = get_asgi_application()

# Imported after Django is set up: the routing modules import models.
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.conf import settings  # noqa: E402

from alliance.body_timeout import RequestBodyTimeout  # noqa: E402
from alliance.lifespan import lifespan  # noqa: E402
from alliance.ws_routes import websocket_urlpatterns  # noqa: E402
from tenants.auth import WebSocketAuthMiddleware  # noqa: E402
from tenants.websocket_origin import SameOriginValidator  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": RequestBodyTimeout(django_asgi_app, seconds=settings.HUB_REQUEST_BODY_TIMEOUT),
        "websocket": SameOriginValidator(WebSocketAuthMiddleware(URLRouter(websocket_urlpatterns))),
        "lifespan": lifespan,
    }
)

# The garbage collector, tuned for a process holding hundreds of sockets. A full collection
# scans every tracked object; the hundred thousand that Django and the app create at import
# live as long as the process, so they are frozen out of its view. And the young generation
# is collected every 50,000 net new objects instead of 700: under bench_mdt's 20 rooms the
# defaults stalled the event loop 60-260 ms about forty times a run (full collections), and
# each stall was a spike in fan-out latency (docs/benchmarks.md, MDT rooms).
gc.freeze()
gc.set_threshold(50_000, 20, 100)
