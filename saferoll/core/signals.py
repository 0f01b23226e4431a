"""What the core announces. The core never talks to the portal: the portal listens (saferoll.portal.apps)."""

from django.dispatch import Signal

# An audit event was written, inside the transaction of the change it records.
# Arguments: event (AuditEvent), rollout (the rollout it concerns, or None).
audit_recorded = Signal()

# An alert was raised, inside the transaction that raised it. Argument: alert (Alert).
alert_raised = Signal()
