"""The rule rollouts put on cohorts: checked by the devices app through its cohort_members_adding signal."""

from devices.models import Cohort, CohortMembership, Device
from rollouts.choices import TERMINAL_STATUSES
from rollouts.models import Rollout
from saferoll.core.errors import invalid


def check_one_rollout_cohort(sender, *, cohort: Cohort, devices: list[Device], field: str, **kwargs) -> None:
    """A device belongs to at most one cohort of the unfinished rollouts of a release (002 A2).

    People edit cohorts rarely and one at a time; two edits of two different cohorts adding the same
    device at the same instant could both pass, which is accepted rather than locking every cohort."""
    unfinished = list(Rollout.objects.exclude(status__in=TERMINAL_STATUSES).only("release_id", "stages"))

    def cohorts_of(rollout: Rollout) -> set[str]:
        return {stage.get("cohort") for stage in rollout.stages if stage.get("cohort")}

    releases = {rollout.release_id for rollout in unfinished if cohort.name in cohorts_of(rollout)}
    if not releases:
        return
    others = set().union(*(cohorts_of(r) for r in unfinished if r.release_id in releases)) - {cohort.name}
    clashes = sorted(
        CohortMembership.objects.filter(cohort__name__in=others, device__in=devices)
        .values_list("device__device_id", flat=True)
        .distinct()
    )
    if clashes:
        raise invalid(
            {
                field: [
                    "These devices already belong to another cohort of a rollout that uses this "
                    f"cohort: {', '.join(clashes)}."
                ]
            }
        )
