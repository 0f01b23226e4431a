"""Rollout plans: their checks and writes, and the presets SafeRoll ships with (SPEC §2, 003):
demo, production and staging.

The presets are data built from the fleet's rings (settings.SAFEROLL_RING_SHARES), so a fleet with
other ring names gets presets over its own rings. `ensure_presets()` stores the missing ones; the
demo seed and a fresh install's first rollout call it. It never changes a plan that already exists:
once stored, a plan belongs to the release managers.
"""

import datetime as dt
from typing import Any, cast

from django.conf import settings
from django.db import IntegrityError, transaction

from rollouts.choices import RESERVED_RING_NAMES
from rollouts.gates import GateConfig
from rollouts.models import Rollout, RolloutPlan
from saferoll.core.audit import Actor, audit_record, diff_fields
from saferoll.core.errors import bad_input

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
                "The four rings of the demo fleet (000 §8.2) with a one-minute bake after the pilot "
                "and automatic promotion, so the whole rollout plays out in a few minutes. Gates of 000 §6.2."
            ),
            # The first stage does not bake, so a person may promote the pilot as soon as the gates
            # pass (000 §13.2); every later stage bakes a minute once 90% of it runs the release.
            "stages": [
                {"ring": ring, "bake_minutes": 0 if index == 0 else 1, "auto_advance": True}
                for index, ring in enumerate(rings)
            ],
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
        raise bad_input(
            "No rollout plan is marked as the default; name a plan or mark one as the default.", field="plan"
        )
    return plan


# --- Checks and writes -----------------------------------------------------------------------------------

_STAGE_KEYS = {
    "ring",
    "bake_minutes",
    "auto_advance",
    "cohort",
    "rings",
    "region",
    "min_installed_share",
    "description",
}
# A month: far beyond the longest production bake (a day, 000 §9.1), and a bound keeps the end of a
# bake (stage start + bake) inside the calendar the autopilot computes it in.
MAX_BAKE_MINUTES = 30 * 24 * 60
# A CharField always has its max_length.
_RING_MAX_LENGTH = cast(int, Rollout._meta.get_field("current_ring").max_length)
PLAN_EDITABLE_FIELDS = (
    "description",
    "stages",
    "gate_config",
    "activation_window_start",
    "activation_window_end",
    "waves",
    "retries",
    "maintenance_windows",
    "is_default",
)


def plan_clean_stages(stages: Any) -> list[dict[str, Any]]:
    """The stages of a plan, checked and with their defaults filled in; a refusal (400) says what is wrong.

    A stage: `ring` (its name, unique in the plan), `bake_minutes` (≥ 0, default 0), `auto_advance`
    (default false), `min_installed_share` (0–1, default 0.9, left out when not given), and optionally `cohort` (deploy to that cohort's members instead of a ring's
    devices) or `rings` (deploy to the devices of several fleet rings at once)."""
    if not isinstance(stages, list) or not stages:
        raise bad_input("A plan needs at least one stage.", field="stages")
    cleaned: list[dict[str, Any]] = []
    names: set[str] = set()
    fleet_rings: set[str] = set()
    for number, stage in enumerate(stages, start=1):
        where = f"Stage {number}"
        if not isinstance(stage, dict):
            raise bad_input(f"{where} must be an object with a ring name.", field="stages")
        unknown = sorted(set(stage) - _STAGE_KEYS)
        if unknown:
            raise bad_input(f"{where} has unknown setting(s): {', '.join(unknown)}.", field="stages")
        _check_storable(where, stage)
        ring = stage.get("ring")
        if not isinstance(ring, str) or not ring.strip():
            raise bad_input(f"{where} needs a ring name.", field="stages")
        ring = ring.strip()
        if len(ring) > _RING_MAX_LENGTH:
            raise bad_input(
                f"{where}: the ring name {ring!r} is longer than {_RING_MAX_LENGTH}.", field="stages"
            )
        if ring in RESERVED_RING_NAMES:
            raise bad_input(f"{where}: {ring!r} is a rollout state and cannot name a ring.", field="stages")
        if ring in names:
            raise bad_input(f"{where}: the ring {ring!r} appears twice.", field="stages")
        names.add(ring)
        bake = stage.get("bake_minutes", 0)
        if isinstance(bake, bool) or not isinstance(bake, int | float) or not 0 <= bake <= MAX_BAKE_MINUTES:
            raise bad_input(
                f"{where}: bake_minutes must be a number of minutes from 0 to {MAX_BAKE_MINUTES} (30 days).",
                field="stages",
            )
        auto_advance = stage.get("auto_advance", False)
        if not isinstance(auto_advance, bool):
            raise bad_input(f"{where}: auto_advance must be true or false.", field="stages")
        clean: dict[str, Any] = {"ring": ring, "bake_minutes": bake, "auto_advance": auto_advance}
        cohort, rings = stage.get("cohort"), stage.get("rings")
        if cohort is not None and rings is not None:
            raise bad_input(f"{where} may name a cohort or fleet rings, not both.", field="stages")
        if cohort is not None:
            if not isinstance(cohort, str) or not cohort.strip():
                raise bad_input(f"{where}: cohort must be a cohort's name.", field="stages")
            clean["cohort"] = cohort.strip()
        covered = [ring] if cohort is None else []
        if rings is not None:
            if not isinstance(rings, list) or not rings or not all(isinstance(r, str) and r for r in rings):
                raise bad_input(f"{where}: rings must be a list of fleet ring names.", field="stages")
            clean["rings"] = covered = list(rings)
        twice = sorted(fleet_rings.intersection(covered))
        if twice:
            raise bad_input(f"{where} deploys to {', '.join(twice)} a second time.", field="stages")
        fleet_rings.update(covered)
        if stage.get("description"):
            clean["description"] = str(stage["description"])
        if "min_installed_share" in stage:
            clean["min_installed_share"] = _clean_min_installed_share(where, stage["min_installed_share"])
        cleaned.append(clean)
    return cleaned


def _clean_min_installed_share(where: str, share: Any) -> float:
    """The share of a stage's devices that must run the release before it bakes and promotes
    (default 0.9 when the stage leaves it out)."""
    if isinstance(share, bool) or not isinstance(share, int | float) or not 0 <= share <= 1:
        raise bad_input(
            f"{where}: min_installed_share must be a share from 0 to 1 (0.9 is 90% of its devices).",
            field="stages",
        )
    return float(share)


def _check_storable(where: str, stage: dict) -> None:
    """PostgreSQL's JSON cannot hold a NUL character or half of a surrogate pair, which a JSON
    request can carry (as \\u0000 or \\udcff): the stage is refused instead of failing to save."""
    texts = [stage.get("ring"), stage.get("cohort"), stage.get("description")]
    if isinstance(stage.get("rings"), list):
        texts.extend(stage["rings"])
    for text in texts:
        if isinstance(text, str) and ("\x00" in text or any("\ud800" <= char <= "\udfff" for char in text)):
            raise bad_input(
                f"{where} contains a character a plan cannot store (NUL or an unpaired surrogate).",
                field="stages",
            )


def plan_clean_gate_config(gate_config: Any) -> dict[str, Any]:
    """The gate settings as given, once rollouts.gates.GateConfig accepts them."""
    if gate_config is None:
        return {}
    if not isinstance(gate_config, dict):
        raise bad_input("gate_config must be an object of gate settings.", field="gate_config")
    try:
        GateConfig.from_dict(gate_config)
    except ValueError as exc:
        raise bad_input(str(exc), field="gate_config") from exc
    return dict(gate_config)


def plan_clean_waves(waves: Any) -> dict[str, Any]:
    """How many of a stage's devices are told to install per minute."""
    return dict(waves or {})


def plan_clean_retries(retries: Any) -> dict[str, Any]:
    """How often, and after how long, a failed deployment is tried again."""
    return dict(retries or {})


def plan_clean_maintenance_windows(windows: Any) -> list[dict[str, Any]]:
    """When the devices of a site or region may activate, in their own time zone."""
    return list(windows or [])


def _check_window(start: dt.time | None, end: dt.time | None) -> None:
    if (start is None) != (end is None):
        raise bad_input(
            "An activation window needs both a start and an end, or neither.", field="activation_window_end"
        )


def plan_create(
    *,
    actor: Actor,
    name: str,
    stages: list[dict],
    gate_config: dict | None = None,
    description: str = "",
    activation_window_start: dt.time | None = None,
    activation_window_end: dt.time | None = None,
    waves: dict | None = None,
    retries: dict | None = None,
    maintenance_windows: list | None = None,
    is_default: bool = False,
) -> RolloutPlan:
    """A new plan, checked; when it is the default the previous default stops being one."""
    stages = plan_clean_stages(stages)
    gate_config = plan_clean_gate_config(gate_config)
    waves = plan_clean_waves(waves)
    retries = plan_clean_retries(retries)
    maintenance_windows = plan_clean_maintenance_windows(maintenance_windows)
    _check_window(activation_window_start, activation_window_end)
    with transaction.atomic():
        if is_default:
            _unset_default()
        plan = RolloutPlan.objects.create(
            name=name,
            description=description,
            stages=stages,
            gate_config=gate_config,
            activation_window_start=activation_window_start,
            activation_window_end=activation_window_end,
            waves=waves,
            retries=retries,
            maintenance_windows=maintenance_windows,
            is_default=is_default,
        )
        audit_record(
            actor=actor,
            action="CREATE",
            obj=plan,
            reason=f"Plan {name} created.",
            changes={"after": _plan_state(plan)},
        )
    return plan


def plan_update(*, plan: RolloutPlan, actor: Actor, reason: str = "", **changes: Any) -> RolloutPlan:
    """Change a plan's editable fields. Rollouts already created keep the stages and gates they froze."""
    unknown = sorted(set(changes) - set(PLAN_EDITABLE_FIELDS))
    if unknown:
        raise bad_input(f"These plan fields cannot be changed: {', '.join(unknown)}.", field=unknown[0])
    if "stages" in changes:
        changes["stages"] = plan_clean_stages(changes["stages"])
    if "gate_config" in changes:
        changes["gate_config"] = plan_clean_gate_config(changes["gate_config"])
    if "waves" in changes:
        changes["waves"] = plan_clean_waves(changes["waves"])
    if "retries" in changes:
        changes["retries"] = plan_clean_retries(changes["retries"])
    if "maintenance_windows" in changes:
        changes["maintenance_windows"] = plan_clean_maintenance_windows(changes["maintenance_windows"])
    with transaction.atomic():
        # Lock the plan: two release managers saving at once must each diff against what the other wrote.
        locked = RolloutPlan.objects.select_for_update().get(pk=plan.pk)
        before = _plan_state(locked)
        for field, value in changes.items():
            setattr(locked, field, value)
        _check_window(locked.activation_window_start, locked.activation_window_end)
        diff = diff_fields(before, _plan_state(locked))
        if diff is not None:
            if changes.get("is_default"):
                _unset_default(exclude=locked)
            locked.save(update_fields=list(changes))
            audit_record(
                actor=actor,
                action="UPDATE",
                obj=locked,
                reason=reason or f"Plan {locked.name} changed: {', '.join(sorted(diff['after']))}.",
                changes=diff,
            )
    for field in PLAN_EDITABLE_FIELDS:
        setattr(plan, field, getattr(locked, field))
    return plan


def _unset_default(*, exclude: RolloutPlan | None = None) -> None:
    others = RolloutPlan.objects.filter(is_default=True)
    if exclude is not None:
        others = others.exclude(pk=exclude.pk)
    others.update(is_default=False)


def _plan_state(plan: RolloutPlan) -> dict[str, Any]:
    """What an audit event records of a plan (JSON-ready)."""
    return {
        "name": plan.name,
        "description": plan.description,
        "stages": plan.stages,
        "gate_config": plan.gate_config,
        "activation_window_start": _time(plan.activation_window_start),
        "activation_window_end": _time(plan.activation_window_end),
        "waves": plan.waves,
        "retries": plan.retries,
        "maintenance_windows": plan.maintenance_windows,
        "is_default": plan.is_default,
    }


def _time(value: dt.time | None) -> str | None:
    return value.isoformat() if value else None
