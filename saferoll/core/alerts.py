"""Alerts: the things an operator must look at, raised by SafeRoll and shown in the portal."""

from django.db import transaction
from django.utils import timezone

from saferoll.core.audit import Actor, actor_label
from saferoll.core.models import Alert, AlertLevel
from saferoll.core.signals import alert_raised


def alert_raise(
    *, level: str = AlertLevel.WARNING, kind: str, title: str, message: str = "", rollout=None, device=None
) -> Alert:
    alert = Alert.objects.create(
        level=level, kind=kind, title=title[:200], message=message, rollout=rollout, device=device
    )
    alert_raised.send(sender=Alert, alert=alert)
    return alert


def alert_acknowledge(*, alert: Alert, actor: Actor) -> Alert:
    with transaction.atomic():
        # Conditional update: acknowledging twice keeps the first person and time.
        Alert.objects.filter(pk=alert.pk, acknowledged_at__isnull=True).update(
            acknowledged_at=timezone.now(), acknowledged_by=actor_label(actor)
        )
    alert.refresh_from_db()
    return alert
