"""ASGI entry point: what the web processes serve (gunicorn with uvicorn workers).

Event streams go to carpweb's small stream app (no thread per open stream); everything else to Django."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "carpweb.settings")
django_application = get_asgi_application()

from wizard.live import asgi as streams  # noqa: E402 - after Django is set up


async def application(scope, receive, send):  # type: ignore[no-untyped-def]
    if streams.route(scope) is not None:
        await streams.serve(scope, receive, send)
    else:
        await django_application(scope, receive, send)
