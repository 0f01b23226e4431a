"""What the devices app asks of the apps above it before it changes something."""

from django.dispatch import Signal

# Devices are about to join a cohort (inside the transaction). A receiver that objects raises
# saferoll.core.errors.ServiceRefused, keyed by `field`; the change is then refused.
# Arguments: cohort (Cohort), devices (list of Device), field (the input field that named them).
cohort_members_adding = Signal()

# A device joined the fleet, or came back to it, after rollouts may have deployed its ring: it
# enrolled or was registered, its revoked credential was issued again, it left investigation, or
# it moved to another ring. Sent once the change has committed; receivers give it what its ring
# should run. Arguments: device (Device), reason (a short sentence: "enrolled", ...).
device_joined = Signal()
