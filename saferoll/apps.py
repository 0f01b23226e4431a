from django.apps import AppConfig
from django.db.models.signals import post_migrate


class SaferollConfig(AppConfig):
    name = "saferoll"
    verbose_name = "SafeRoll"

    def ready(self) -> None:
        post_migrate.connect(sync_roles_after_migrate, sender=self, dispatch_uid="saferoll.sync_roles")


def sync_roles_after_migrate(sender, using, **kwargs) -> None:
    """Keep the role groups in line with saferoll.roles after every migrate and every flush (a flush,
    as transactional tests do, empties the groups table and only permissions come back on their own).
    Runs on the migration state's app registry, as the data migrations do."""
    from django.db import connections
    from django.db.migrations.executor import MigrationExecutor

    from saferoll.roles import sync_role_groups

    sync_role_groups(MigrationExecutor(connections[using]).loader.project_state().apps)
