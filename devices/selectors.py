"""Reads of devices and cohorts that are more than a one-line filter."""

from django.db.models import Count, OuterRef, Prefetch, QuerySet, Subquery

from devices.models import Cohort, Device
from rollouts.models import DeviceDeployment


def _latest_deployments() -> QuerySet[DeviceDeployment]:
    """A device's deployments, newest first (uses the deployment's device_id index)."""
    return DeviceDeployment.objects.filter(device=OuterRef("pk")).order_by("-created_at", "-id")


def device_list() -> QuerySet[Device]:
    """Devices for the list: variant joined, and the state of each one's newest deployment."""
    return Device.objects.select_related("variant").annotate(
        deployment_state=Subquery(_latest_deployments().values("state")[:1]),
        deployment_rollout_id=Subquery(_latest_deployments().values("rollout__rollout_id")[:1]),
    )


def device_detail() -> QuerySet[Device]:
    """Devices with what their detail shows: variant, cohort names."""
    return Device.objects.select_related("variant").prefetch_related(
        Prefetch("cohorts", queryset=Cohort.objects.only("id", "name"))
    )


def device_latest_deployment(device: Device) -> DeviceDeployment | None:
    """The device's newest deployment, whatever its state, with its rollout and release."""
    return (
        DeviceDeployment.objects.filter(device=device)
        .select_related("rollout__release")
        .order_by("-created_at", "-id")
        .first()
    )


def cohort_list() -> QuerySet[Cohort]:
    return Cohort.objects.annotate(device_count=Count("memberships"))


def cohort_member_ids(cohort: Cohort) -> list[str]:
    return list(
        Device.objects.filter(memberships__cohort=cohort)
        .order_by("device_id")
        .values_list("device_id", flat=True)
    )
