"""WSGI entry point: production serves the REST API from a WSGI server (gunicorn)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "saferoll.settings")
application = get_wsgi_application()
