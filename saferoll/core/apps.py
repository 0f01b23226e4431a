from django.apps import AppConfig
from django.db import connections
from django.db.migrations.executor import MigrationExecutor
from django.db.models.signals import post_migrate

from saferoll.core.roles import sync_role_groups


class CoreConfig(AppConfig):
    """The shared core under every app. Its label stays "saferoll": the tables and migrations keep their names."""

    name = "saferoll.core"
    label = "saferoll"
    verbose_name = "SafeRoll"

    def ready(self) -> None:
        post_migrate.connect(sync_roles_after_migrate, sender=self, dispatch_uid="saferoll.sync_roles")


def sync_roles_after_migrate(sender, using, **kwargs) -> None:
    """Keep the role groups in line with saferoll.core.roles after every migrate and every flush (a flush,
    as transactional tests do, empties the groups table and only permissions come back on their own).
    Runs on the migration state's app registry, as the data migrations do."""
    sync_role_groups(MigrationExecutor(connections[using]).loader.project_state().apps)
