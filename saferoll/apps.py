from django.apps import AppConfig


class SaferollConfig(AppConfig):
    name = "saferoll"
    verbose_name = "SafeRoll"
