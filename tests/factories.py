"""factory-boy factories for every model, so tests say only what matters to them."""

import datetime as dt

import factory
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import transaction
from django.utils import timezone

from devices.choices import DeviceStatus
from devices.models import Cohort, Device, HardwareVariant, hash_token
from rollouts.choices import DeploymentState, IncidentSeverity
from rollouts.gates import GateConfig
from rollouts.models import DeviceDeployment, Evaluation, Incident, Release, Rollout, RolloutPlan
from saferoll.core import roles
from telemetry.models import HealthCheck
from telemetry.rollups import CheckRow, rollups_record

DEMO_STAGES = [
    {"ring": "pilot", "bake_minutes": 0, "auto_advance": False},
    {"ring": "ring_5", "bake_minutes": 0, "auto_advance": False},
    {"ring": "ring_25", "bake_minutes": 0, "auto_advance": False},
    {"ring": "ring_100", "bake_minutes": 0, "auto_advance": False},
]


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    is_staff = True
    password = factory.django.Password("correct-horse-battery")

    @factory.post_generation
    def role(self, create, extracted, **kwargs):
        if create and extracted:
            self.groups.add(Group.objects.get(name=roles.GROUP_NAMES[extracted]))


class HardwareVariantFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = HardwareVariant
        django_get_or_create = ("name",)

    name = "tv-55-gen3"


class DeviceFactory(factory.django.DjangoModelFactory):
    """A device with a known token: `DeviceFactory(token="...")` or the default `token-<device_id>`."""

    class Meta:
        model = Device
        skip_postgeneration_save = True

    device_id = factory.Sequence(lambda n: f"device_{n:04d}")
    ring = "pilot"
    app_version = "v2.0"
    site = "St. Mary's"
    region = "eu-west"
    variant = factory.SubFactory(HardwareVariantFactory)
    status = DeviceStatus.ONLINE
    last_heartbeat = factory.LazyFunction(timezone.now)
    token_hash = factory.LazyAttribute(lambda o: hash_token(f"token-{o.device_id}"))
    token_issued_at = factory.LazyFunction(timezone.now)


def device_token(device: Device) -> str:
    return f"token-{device.device_id}"


class CohortFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Cohort

    name = factory.Sequence(lambda n: f"cohort-{n}")


class ReleaseFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Release
        django_get_or_create = ("version",)

    version = factory.Sequence(lambda n: f"v3.{n}")
    artifact_url = factory.LazyAttribute(lambda o: f"https://updates.example.com/{o.version}.img")
    size_bytes = 1024
    sha256 = "0" * 64
    is_stable = False


class RolloutPlanFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = RolloutPlan
        django_get_or_create = ("name",)

    name = "test-plan"
    stages = factory.LazyFunction(lambda: [dict(stage) for stage in DEMO_STAGES])
    # Test fleets are a few dozen devices that send one check each: the minimum sample is sized to them.
    gate_config = factory.LazyFunction(lambda: GateConfig(min_sample=10, min_checks=10).to_dict())


class RolloutFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Rollout

    release = factory.SubFactory(ReleaseFactory)
    plan = factory.SubFactory(RolloutPlanFactory)
    stages = factory.LazyAttribute(lambda o: o.plan.stages)
    gate_config = factory.LazyAttribute(lambda o: GateConfig.from_dict(o.plan.gate_config).to_dict())


class DeviceDeploymentFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = DeviceDeployment

    rollout = factory.SubFactory(RolloutFactory)
    device = factory.SubFactory(DeviceFactory)
    ring = factory.LazyAttribute(lambda o: o.device.ring)
    state = DeploymentState.PENDING
    # Released (told to install) when made, as a stage without waves releases its devices.
    released_at = factory.LazyFunction(timezone.now)


class EvaluationFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Evaluation

    rollout = factory.SubFactory(RolloutFactory)
    ring = "pilot"
    action = "PROMOTE"
    reason = "All SLO gates passed."
    detail = factory.LazyFunction(dict)


class IncidentFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Incident

    severity = IncidentSeverity.SEV2
    title = factory.Sequence(lambda n: f"Incident {n}")


class HealthCheckFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = HealthCheck

    device = factory.SubFactory(DeviceFactory)
    ring = factory.LazyAttribute(lambda o: o.device.ring)
    version = factory.LazyAttribute(lambda o: o.device.app_version)
    boot_ok = True
    crash_free = 0.995
    checkin_latency_ms = 50
    received_at = factory.LazyFunction(timezone.now)
    device_time = factory.LazyAttribute(lambda o: o.received_at - dt.timedelta(milliseconds=10))

    @classmethod
    def _create(cls, model_class, *args, **kwargs):
        # Summed into the rollups like a check that came through ingestion (what every reader of
        # ring health reads), without ingestion's heartbeat refresh of the device.
        with transaction.atomic():
            check = super()._create(model_class, *args, **kwargs)
            rollups_record([CheckRow.of(check)])
        return check
