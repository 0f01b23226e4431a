"""Placeholder until this API module is written."""

urlpatterns: list = []
