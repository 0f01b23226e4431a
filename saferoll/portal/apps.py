from django.apps import AppConfig


class PortalConfig(AppConfig):
    """The portal's pages and their live updates, above every domain app."""

    name = "saferoll.portal"
    label = "portal"
    verbose_name = "SafeRoll portal"

    def ready(self) -> None:
        from saferoll.portal import broadcast

        broadcast.connect()
