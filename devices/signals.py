"""What the devices app asks of the apps above it before it changes something."""

from django.dispatch import Signal

# Devices are about to join a cohort (inside the transaction). A receiver that objects raises
# saferoll.core.errors.ServiceRefused, keyed by `field`; the change is then refused.
# Arguments: cohort (Cohort), devices (list of Device), field (the input field that named them).
cohort_members_adding = Signal()
