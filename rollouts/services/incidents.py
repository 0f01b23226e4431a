"""Incidents: opened against a release, resolved by people. The only way these rows change.

Every function is keyword-only, runs in one transaction and appends exactly one audit event for the
write it makes (none when a call changes nothing); the API, the admin and the portal all come here.
"""

from typing import Any

from django.db import transaction
from django.utils import timezone

from rollouts.choices import IncidentSeverity, IncidentStatus
from rollouts.models import Incident, Release
from saferoll.core.audit import Actor, actor_user, audit_record, diff_fields
from saferoll.core.errors import ServiceRefused, bad_input

# Audit actions of this module (the object type says they acted on an incident).
ACTION_OPEN = "OPEN"
ACTION_UPDATE = "UPDATE"
ACTION_RESOLVE = "RESOLVE"


def incident_state(incident: Incident) -> dict[str, Any]:
    """What an audit event records of an incident (JSON-ready)."""
    return {
        "severity": incident.severity,
        "title": incident.title,
        "description": incident.description,
        "release": release.version if (release := incident.release) else None,
        "status": incident.status,
        "resolved_at": incident.resolved_at.isoformat() if incident.resolved_at else None,
    }


@transaction.atomic
def incident_open(
    *,
    severity: str,
    title: str,
    actor: Actor,
    description: str = "",
    release: Release | None = None,
) -> Incident:
    """Open an incident. Pausing the rollouts of a release with an open Sev1 is the autopilot's job."""
    if severity not in IncidentSeverity.values:
        raise bad_input(
            f"Severity must be one of {', '.join(IncidentSeverity.values)}, not {severity!r}.",
            field="severity",
        )
    title = (title or "").strip()
    if not title:
        raise bad_input("An incident needs a title.", field="title")
    incident = Incident.objects.create(
        severity=severity,
        title=title,
        description=description or "",
        release=release,
        opened_by=actor_user(actor),
    )
    audit_record(
        actor=actor, action=ACTION_OPEN, obj=incident, changes=diff_fields({}, incident_state(incident))
    )
    return incident


@transaction.atomic
def incident_update(*, incident: Incident, actor: Actor, data: dict[str, Any]) -> Incident:
    """Correct an incident's severity, title, description or release (resolving has its own service)."""
    incident = Incident.objects.select_for_update().get(pk=incident.pk)
    unknown = set(data) - {"severity", "title", "description", "release"}
    if unknown:
        raise bad_input(f"Unknown incident field(s): {', '.join(sorted(unknown))}.")
    if "severity" in data and data["severity"] not in IncidentSeverity.values:
        raise bad_input(f"Severity must be one of {', '.join(IncidentSeverity.values)}.", field="severity")
    if "title" in data and not (data["title"] or "").strip():
        raise bad_input("An incident needs a title.", field="title")
    before = incident_state(incident)
    for field, value in data.items():
        setattr(incident, field, value.strip() if field == "title" else value)
    incident.save()
    changes = diff_fields(before, incident_state(incident))
    if changes:
        audit_record(actor=actor, action=ACTION_UPDATE, obj=incident, changes=changes)
    return incident


@transaction.atomic
def incident_resolve(*, incident: Incident, actor: Actor, reason: str = "") -> Incident:
    """Close an open incident. Resolving twice is refused rather than silently re-stamped."""
    # The lock makes two people resolving at once end with one resolution and one refusal.
    incident = Incident.objects.select_for_update().get(pk=incident.pk)
    if incident.status == IncidentStatus.RESOLVED:
        raise ServiceRefused(f"Incident {incident.pk} is already resolved.")
    before = incident_state(incident)
    incident.status = IncidentStatus.RESOLVED
    incident.resolved_at = timezone.now()
    incident.resolved_by = actor_user(actor)
    incident.save(update_fields=["status", "resolved_at", "resolved_by"])
    audit_record(
        actor=actor,
        action=ACTION_RESOLVE,
        obj=incident,
        reason=reason,
        changes=diff_fields(before, incident_state(incident)),
    )
    return incident
