from django.db import models

from devices.models import Device


class HealthCheck(models.Model):
    """One health report of a device, kept with the device's clock and the server's receive time."""

    # On PostgreSQL the table is partitioned by device_time (telemetry/partitions.py) and its primary
    # key in the database is (id, device_time); ids come from one sequence, so id alone is unique.
    id = models.BigAutoField(primary_key=True)
    device = models.ForeignKey(Device, on_delete=models.CASCADE, related_name="health_checks", db_index=False)
    # The ring and version the server knew for the device when the check arrived.
    ring = models.CharField(max_length=20)
    version = models.CharField(max_length=50)
    boot_ok = models.BooleanField()
    crash_free = models.FloatField()
    checkin_latency_ms = models.PositiveIntegerField()
    availability = models.FloatField(null=True, blank=True)
    event_lag_ms = models.PositiveIntegerField(null=True, blank=True)
    dropped_events = models.PositiveIntegerField(null=True, blank=True)
    # Custom KPIs, {name: number}, validated on the way in (telemetry.health.metric_name_problem).
    metrics = models.JSONField(default=dict, blank=True)
    device_time = models.DateTimeField()
    # Windows are cut on this clock, so a device with a skewed clock still counts.
    received_at = models.DateTimeField()

    class Meta:
        ordering = ["-received_at"]
        permissions = [("ingest_health", "Can report health checks on behalf of devices (a gateway)")]
        constraints = [
            # A retried check (same device, same device timestamp) is stored once.
            models.UniqueConstraint(fields=["device", "device_time"], name="unique_check_per_device_time"),
        ]
        indexes = [
            models.Index(fields=["ring", "received_at"]),
            models.Index(fields=["received_at"]),
        ]

    def __str__(self) -> str:
        return f"{self.device_id} @ {self.received_at:%H:%M:%S}"
