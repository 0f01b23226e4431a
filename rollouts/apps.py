from django.apps import AppConfig


class RolloutsConfig(AppConfig):
    name = "rollouts"

    def ready(self) -> None:
        from devices.signals import cohort_members_adding
        from rollouts.services.cohorts import check_one_rollout_cohort

        cohort_members_adding.connect(check_one_rollout_cohort, dispatch_uid="rollouts.one_rollout_cohort")
