from django.apps import AppConfig


class RolloutsConfig(AppConfig):
    name = "rollouts"

    def ready(self) -> None:
        from devices.signals import cohort_members_adding, device_joined
        from rollouts.selectors import newest_targetings
        from rollouts.services.cohorts import check_one_rollout_cohort
        from rollouts.services.deployments import on_device_joined
        from telemetry.rollups import use_targeting_lookup

        cohort_members_adding.connect(check_one_rollout_cohort, dispatch_uid="rollouts.one_rollout_cohort")
        device_joined.connect(on_device_joined, dispatch_uid="rollouts.deploy_to_joined_device")
        # Health rollups sum a device's checks under the rollout stage that brought it the version.
        use_targeting_lookup(newest_targetings)
