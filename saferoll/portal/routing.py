"""Websocket routes, mounted by saferoll.asgi behind the session authentication middleware."""

from django.urls import path

from saferoll.portal.consumers import FleetConsumer

websocket_urlpatterns = [
    path("ws", FleetConsumer.as_asgi()),
]
