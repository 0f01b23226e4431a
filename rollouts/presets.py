"""The rollout plans SafeRoll ships with (SPEC §2, 003): demo, production and staging.

The presets are data built from the fleet's rings (settings.SAFEROLL_RING_SHARES), so a fleet with
other ring names gets presets over its own rings. `ensure_presets()` stores the missing ones; the
demo seed and a fresh install's first rollout call it. It never changes a plan that already exists:
once stored, a plan belongs to the release managers.
"""

from django.conf import settings
from django.db import IntegrityError, transaction

from rollouts.models import RolloutPlan

DEMO = "demo"
PRODUCTION = "production"
STAGING = "staging"


def fleet_rings() -> list[str]:
    """The fleet's rings in rollout order."""
    return list(settings.SAFEROLL_RING_SHARES)


def preset_definitions() -> list[dict]:
    """Every preset as the keyword arguments of rollouts.services.plan_create."""
    rings = fleet_rings()
    return [
        {
            "name": DEMO,
            "description": (
                "The four rings of the demo fleet (000 §8.2) with a one-minute bake and automatic "
                "promotion, so the whole rollout plays out in a few minutes. Gates of 000 §6.2."
            ),
            "stages": [{"ring": ring, "bake_minutes": 1, "auto_advance": True} for ring in rings],
            # 000 §6.2 as they are; only the sample is the default's 10 devices of a 100-device pilot.
            "gate_config": {},
            "is_default": True,
        },
        {
            "name": PRODUCTION,
            "description": (
                "Conservative: hours of bake per ring (000 §9.1), a person promotes every ring, "
                "stricter gates over a longer window, 50 devices before any judgement, and a pause "
                "after two failing evaluations in a row."
            ),
            "stages": [
                {"ring": ring, "bake_minutes": _production_bake(index), "auto_advance": False}
                for index, ring in enumerate(rings)
            ],
            "gate_config": {
                "crash_free_min": 0.995,
                "crash_free_critical": 0.97,
                "boot_success_min": 0.998,
                "boot_success_critical": 0.98,
                "latency_max_ms": 400,
                "latency_critical_ms": 800,
                # A longer window smooths the noise that a slow, careful rollout can afford to wait out.
                "window_minutes": 15,
                "min_sample": 50,
                "reporting_rate_min": 0.95,
                "reporting_rate_critical": 0.70,
                "deployment_failure_max": 0.02,
                "consecutive_failures_to_pause": 2,
                "availability_min": 0.99,
            },
            "is_default": False,
        },
        {
            "name": STAGING,
            "description": (
                "Aggressive: short bakes, automatic promotion, and the smaller rings merged into "
                "bigger steps (pilot → ring_25 → ring_100 on the demo fleet). Default thresholds "
                "with a smaller sample and more patience before pausing."
            ),
            "stages": _staging_stages(rings),
            "gate_config": {"min_sample": 5, "reporting_rate_min": 0.80, "consecutive_failures_to_pause": 5},
            "is_default": False,
        },
    ]


def _production_bake(index: int) -> int:
    """000 §9.1: pilot 2–4 h, the first wide ring 4–8 h, every ring after it 12–24 h."""
    return (240, 480)[index] if index < 2 else 1440


def _staging_stages(rings: list[str]) -> list[dict]:
    """Skip a step without skipping devices: rings are cumulative, so the second ring's devices are
    deployed together with the third ring's, in a stage that carries the third ring's name."""
    if len(rings) < 3:
        return [{"ring": ring, "bake_minutes": 5, "auto_advance": True} for ring in rings]
    first, second, third, *rest = rings
    return [
        {"ring": first, "bake_minutes": 5, "auto_advance": True},
        {"ring": third, "rings": [second, third], "bake_minutes": 5, "auto_advance": True},
        *({"ring": ring, "bake_minutes": 10, "auto_advance": True} for ring in rest),
    ]


def ensure_presets() -> list[RolloutPlan]:
    """Store the presets that are missing and return all three. Safe to run again or concurrently.

    The demo preset becomes the default plan only when no plan is the default yet."""
    from rollouts.services import plan_create  # services fall back on this module: import late

    plans = []
    for definition in preset_definitions():
        plan = RolloutPlan.objects.filter(name=definition["name"]).first()
        if plan is None:
            wants_default = (
                definition["is_default"] and not RolloutPlan.objects.filter(is_default=True).exists()
            )
            try:
                plan = plan_create(actor=None, **{**definition, "is_default": wants_default})
            except IntegrityError:
                # Another seed stored it between our look and our insert: theirs is as good as ours.
                plan = RolloutPlan.objects.get(name=definition["name"])
        plans.append(plan)
    return plans


def default_plan() -> RolloutPlan:
    """The plan a rollout follows when none is named; the presets are stored when none is set."""
    plan = RolloutPlan.objects.filter(is_default=True).first()
    if plan is None:
        with transaction.atomic():
            ensure_presets()
        plan = RolloutPlan.objects.filter(is_default=True).first()
    if plan is None:
        raise ValueError("No rollout plan is marked as the default; name a plan or mark one as the default.")
    return plan
