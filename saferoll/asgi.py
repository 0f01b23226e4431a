"""ASGI entry point: HTTP and websockets in one process (`manage.py serve`)."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "saferoll.settings")
application = get_asgi_application()
