from django.db import migrations

from saferoll.core.roles import sync_role_groups


def forwards(apps, schema_editor):
    sync_role_groups(apps)


class Migration(migrations.Migration):
    """The permission to promote or resume against the gates, granted to release managers."""

    dependencies = [
        ("rollouts", "0002_progression"),
        ("saferoll", "0004_sync_role_groups"),
    ]

    operations = [
        migrations.AlterModelOptions(
            name="rollout",
            options={
                "ordering": ["-created_at"],
                "permissions": [
                    ("start_rollout", "Can start a rollout"),
                    ("promote_rollout", "Can promote a rollout"),
                    ("pause_rollout", "Can pause a rollout"),
                    ("resume_rollout", "Can resume a rollout"),
                    ("rollback_rollout", "Can roll back a rollout"),
                    ("override_gates", "Can promote or resume a rollout against the gates, with a reason"),
                ],
            },
        ),
        migrations.RunPython(forwards, migrations.RunPython.noop),
    ]
