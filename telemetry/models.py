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


class HealthGroup(models.Model):
    """What health checks are summed under in the per-minute rollups: the device's ring and the
    version it reported, and the rollout stage that had targeted the device with that version."""

    ring = models.CharField(max_length=20)
    version = models.CharField(max_length=50)
    # The targeting rollout's id; a plain number because rollouts build on telemetry, not the other
    # way round. None for checks of a version no rollout had brought to the device.
    rollout_id = models.BigIntegerField(null=True, blank=True)
    stage = models.CharField(max_length=20, blank=True)

    class Meta:
        constraints = [
            # Two partial constraints rather than one: NULLs are distinct in a unique index.
            models.UniqueConstraint(
                fields=["ring", "version", "rollout_id", "stage"],
                condition=models.Q(rollout_id__isnull=False),
                name="unique_targeted_health_group",
            ),
            models.UniqueConstraint(
                fields=["ring", "version"],
                condition=models.Q(rollout_id__isnull=True),
                name="unique_untargeted_health_group",
            ),
        ]

    def __str__(self) -> str:
        target = f" of rollout {self.rollout_id} {self.stage}" if self.rollout_id else ""
        return f"{self.ring} on {self.version}{target}"


class HealthMinute(models.Model):
    """One group's checks received in one minute, summed on ingest (telemetry.rollups): what every
    health window is read from, however many checks it holds."""

    group = models.ForeignKey(HealthGroup, on_delete=models.CASCADE, related_name="minutes")
    minute = models.DateTimeField()
    checks = models.PositiveIntegerField(default=0)
    crash_free_sum = models.FloatField(default=0)
    booted = models.PositiveIntegerField(default=0)
    availability_sum = models.FloatField(default=0)
    availability_count = models.PositiveIntegerField(default=0)
    dropped_sum = models.BigIntegerField(default=0)
    dropped_count = models.PositiveIntegerField(default=0)
    # Device counts kept from each device's last check (DeviceCheckState), so a window's reporting
    # devices are a sum, not a distinct count over its checks:
    # devices whose newest check in this group falls in this minute;
    devices = models.IntegerField(default=0)
    # devices whose newest check in this group's ring falls in this minute (the ring-wide count);
    ring_devices = models.IntegerField(default=0)
    # devices with a check in this group in this minute, and in this ring in this minute (charts).
    minute_devices = models.IntegerField(default=0)
    minute_ring_devices = models.IntegerField(default=0)
    # Over the devices of the minute, each device's mean crash rate and latency over its own checks
    # of the minute: their sums and sums of squares, for the spread a baseline comparison reads.
    device_crash_rate_sum = models.FloatField(default=0)
    device_crash_rate_squares = models.FloatField(default=0)
    device_latency_sum = models.FloatField(default=0)
    device_latency_squares = models.FloatField(default=0)
    # Devices whose newest minute of checks in this ring is this one, and critically unhealthy
    # (telemetry.health.CRASH_FREE_CRITICAL, BOOT_SUCCESS_CRITICAL): the fleet-wide emergency stop.
    critical_devices = models.IntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["group", "minute"], name="unique_health_minute")]
        indexes = [models.Index(fields=["minute"])]

    def __str__(self) -> str:
        return f"{self.group} @ {self.minute:%H:%M}"


class HealthMinuteValue(models.Model):
    """How many checks of a group's minute carried each value of a measure read by its median
    (check-in latency, event lag; integer milliseconds), so a window's median is exact."""

    class Measure(models.TextChoices):
        LATENCY = "latency"
        EVENT_LAG = "event_lag"

    group = models.ForeignKey(HealthGroup, on_delete=models.CASCADE, related_name="+")
    minute = models.DateTimeField()
    measure = models.CharField(max_length=10, choices=Measure)
    value = models.PositiveIntegerField()
    count = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["group", "minute", "measure", "value"], name="unique_health_minute_value"
            )
        ]
        indexes = [models.Index(fields=["minute"])]

    def __str__(self) -> str:
        return f"{self.group} @ {self.minute:%H:%M}: {self.count} × {self.measure} {self.value}"


class HealthMinuteMetric(models.Model):
    """A custom KPI's sum and count over a group's minute, for its window mean."""

    group = models.ForeignKey(HealthGroup, on_delete=models.CASCADE, related_name="+")
    minute = models.DateTimeField()
    name = models.CharField(max_length=40)
    total = models.FloatField(default=0)
    count = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["group", "minute", "name"], name="unique_health_minute_metric")
        ]
        indexes = [models.Index(fields=["minute"])]

    def __str__(self) -> str:
        return f"{self.group} @ {self.minute:%H:%M}: {self.name}"


class DeviceCheckState(models.Model):
    """A device's newest stored check: when, under which group, and its checks of that minute so
    far. Each new check moves the device's counts and its means of the minute in the rollups, in
    the same transaction."""

    device = models.OneToOneField(
        Device, on_delete=models.CASCADE, primary_key=True, related_name="check_state"
    )
    group = models.ForeignKey(HealthGroup, on_delete=models.CASCADE, related_name="+")
    last_check_at = models.DateTimeField()
    minute_checks = models.PositiveIntegerField(default=0)
    minute_crash_free_sum = models.FloatField(default=0)
    minute_latency_sum = models.FloatField(default=0)
    minute_booted = models.PositiveIntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.device_id}: {self.group} @ {self.last_check_at:%H:%M:%S}"
