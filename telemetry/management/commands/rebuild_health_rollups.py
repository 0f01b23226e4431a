"""python manage.py rebuild_health_rollups: recompute the per-minute health rollups from the raw
checks still kept."""

from django.core.management.base import BaseCommand

from telemetry.rollups import rollups_rebuild


class Command(BaseCommand):
    help = (
        "Recompute the per-minute health rollups and each device's newest check from the raw health "
        "checks still kept (after restoring checks from a backup, or once after upgrading)."
    )

    def handle(self, *args, **options) -> None:
        summed = rollups_rebuild()
        self.stdout.write(f"Summed {summed} health checks into the rollups.")
