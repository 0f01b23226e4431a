from django.db import migrations

from saferoll.core.roles import sync_role_groups


def forwards(apps, schema_editor):
    sync_role_groups(apps)


class Migration(migrations.Migration):
    """Grant the emergency-stop permission, which 0003 created, to the roles that have it."""

    dependencies = [("saferoll", "0003_fleet_state_and_alerts")]

    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
