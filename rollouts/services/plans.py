"""Rollout plans: their checks and writes, and the presets SafeRoll ships with (SPEC §2, 003):
demo, production and staging.

The presets are data built from the fleet's rings (settings.SAFEROLL_RING_SHARES), so a fleet with
other ring names gets presets over its own rings. `ensure_presets()` stores the missing ones; the
demo seed and a fresh install's first rollout call it. It never changes a plan that already exists:
once stored, a plan belongs to the release managers.
"""

import datetime as dt
from typing import Any, TypeGuard, cast
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.conf import settings
from django.db import IntegrityError, transaction

from devices.models import Device
from rollouts import maintenance
from rollouts.choices import RESERVED_RING_NAMES
from rollouts.gates import GateConfig
from rollouts.models import Rollout, RolloutPlan
from rollouts.whatif import FleetModel, WhatIfPlan
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
                # 000 §6.2's crash-free goal: a healthy fleet runs at about 99.3 %, so a stricter
                # goal fails every release, on the previous release as much (what-if: good releases
                # held forever). Stricter where it is safe: the critical line, boots, latency.
                "crash_free_min": 0.99,
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
    (default false), `min_installed_share` (0–1, default 0.9, left out when not given), and
    optionally `cohort` (deploy to that cohort's members instead of a ring's devices) or `rings`
    (deploy to the devices of several fleet rings at once), and `region` (deploy only the devices
    of that region, so a ring can be rolled out region after region)."""
    if not isinstance(stages, list) or not stages:
        raise bad_input("A plan needs at least one stage.", field="stages")
    cleaned: list[dict[str, Any]] = []
    names: set[str] = set()
    # Fleet ring → the regions stages already deployed it in (None: a stage without a region).
    deployed: dict[str, set[str | None]] = {}
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
        region = _clean_stage_region(where, stage.get("region"))
        if region is not None:
            clean["region"] = region
        _check_deployed_once(where, covered, region, deployed)
        if stage.get("description"):
            clean["description"] = str(stage["description"])
        if "min_installed_share" in stage:
            clean["min_installed_share"] = _clean_min_installed_share(where, stage["min_installed_share"])
        cleaned.append(clean)
    return cleaned


def _clean_stage_region(where: str, region: Any) -> str | None:
    """A stage's region, which some device of the fleet must be in: a misspelt region would
    otherwise make a stage that deploys nothing and passes its gates on no data."""
    if region is None:
        return None
    if not isinstance(region, str) or not region.strip():
        raise bad_input(f"{where}: region must be the name of a region of the fleet.", field="stages")
    region = region.strip()
    if not Device.objects.filter(region=region).exists():
        known = ", ".join(fleet_regions()) or "none (no device has a region)"
        raise bad_input(
            f"{where}: no device is in region {region!r}; known regions: {known}.", field="stages"
        )
    return region


def fleet_regions() -> list[str]:
    """The regions the fleet's devices are in, by name."""
    regions = Device.objects.exclude(region="").order_by("region").values_list("region", flat=True)
    return list(regions.distinct())


def _check_deployed_once(
    where: str, covered: list[str], region: str | None, deployed: dict[str, set[str | None]]
) -> None:
    """A fleet ring is deployed once per region, or once for the whole fleet: a stage without a
    region covers every region, so it overlaps any regional stage of the same ring."""
    twice = sorted(
        ring
        for ring in covered
        if ring in deployed and (region is None or None in deployed[ring] or region in deployed[ring])
    )
    if twice:
        place = f" in region {region}" if region is not None else ""
        raise bad_input(f"{where} deploys to {', '.join(twice)}{place} a second time.", field="stages")
    for ring in covered:
        deployed.setdefault(ring, set()).add(region)


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
    texts = [stage.get("ring"), stage.get("cohort"), stage.get("region"), stage.get("description")]
    if isinstance(stage.get("rings"), list):
        texts.extend(stage["rings"])
    for text in texts:
        if isinstance(text, str) and _unstorable(text):
            raise bad_input(
                f"{where} contains a character a plan cannot store (NUL or an unpaired surrogate).",
                field="stages",
            )


def _unstorable(text: str) -> bool:
    return "\x00" in text or any("\ud800" <= char <= "\udfff" for char in text)


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


_WAVE_KEYS = {"per_minute", "growth", "max_per_minute"}
_RETRY_KEYS = {"count", "backoff_seconds"}
MAX_RETRIES = 10
# A day: a longer wait before the first retry is a failure to look at, not to retry.
MAX_BACKOFF_SECONDS = 24 * 60 * 60
# Past this a wave would be the whole of any fleet; the bound keeps the growth math finite.
MAX_WAVE_GROWTH = 10


def _is_int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value == value


def plan_clean_waves(waves: Any) -> dict[str, Any]:
    """How many of a stage's devices are told to install per minute; empty: the whole stage at once.

    `per_minute` (≥ 1) devices in the stage's first minute, `growth` (≥ 1, default 1: a fixed rate)
    multiplies the wave each minute after (AWS IoT Jobs' exponentialRate), `max_per_minute` caps it."""
    if waves is None or waves == {}:
        return {}
    if not isinstance(waves, dict):
        raise bad_input('waves must be an object such as {"per_minute": 50, "growth": 2}.', field="waves")
    unknown = sorted(set(waves) - _WAVE_KEYS)
    if unknown:
        raise bad_input(
            f"waves has unknown setting(s): {', '.join(map(str, unknown))}; "
            f"it takes per_minute, growth and max_per_minute.",
            field="waves",
        )
    per_minute = waves.get("per_minute")
    if not _is_int(per_minute) or per_minute < 1:
        raise bad_input("waves.per_minute must be a whole number of devices, at least 1.", field="waves")
    growth = waves.get("growth", 1)
    if not _is_number(growth) or not 1 <= growth <= MAX_WAVE_GROWTH:
        raise bad_input(
            f"waves.growth must be a number from 1 (a fixed rate) to {MAX_WAVE_GROWTH}.", field="waves"
        )
    clean: dict[str, Any] = {"per_minute": per_minute, "growth": growth}
    if "max_per_minute" in waves:
        cap = waves["max_per_minute"]
        if not _is_int(cap) or cap < per_minute:
            raise bad_input(
                f"waves.max_per_minute must be a whole number of devices, at least per_minute ({per_minute}).",
                field="waves",
            )
        clean["max_per_minute"] = cap
    return clean


def plan_clean_retries(retries: Any) -> dict[str, Any]:
    """How often, and after how long, a failed deployment is tried again; empty: a failure is final.

    `count` retries (0–10) and `backoff_seconds` (0 to a day) before the first, doubling after each."""
    if retries is None or retries == {}:
        return {}
    if not isinstance(retries, dict):
        raise bad_input(
            'retries must be an object such as {"count": 2, "backoff_seconds": 60}.', field="retries"
        )
    unknown = sorted(set(retries) - _RETRY_KEYS)
    if unknown:
        raise bad_input(
            f"retries has unknown setting(s): {', '.join(map(str, unknown))}; "
            f"it takes count and backoff_seconds.",
            field="retries",
        )
    count = retries.get("count")
    if not _is_int(count) or not 0 <= count <= MAX_RETRIES:
        raise bad_input(f"retries.count must be a whole number from 0 to {MAX_RETRIES}.", field="retries")
    backoff = retries.get("backoff_seconds", 0)
    if not _is_int(backoff) or not 0 <= backoff <= MAX_BACKOFF_SECONDS:
        raise bad_input(
            f"retries.backoff_seconds must be a whole number of seconds from 0 to {MAX_BACKOFF_SECONDS} (a day).",
            field="retries",
        )
    return {"count": count, "backoff_seconds": backoff}


_WINDOW_KEYS = {"region", "site", "time_zone", "start", "end", "weekdays"}
# Far more than a fleet's sites; a bound keeps each device's poll from weighing an endless list.
MAX_MAINTENANCE_WINDOWS = 200


def plan_clean_maintenance_windows(windows: Any) -> list[dict[str, Any]]:
    """When the devices of a site or region may activate, in their own time zone (rollouts.maintenance).

    A window: `site` or `region` (at most one; neither: the whole fleet), `time_zone` (IANA),
    `start` and `end` ("HH:MM" local; an end before the start spans midnight) and optionally
    `weekdays` (mon … sun, default every day)."""
    if windows is None:
        return []
    if not isinstance(windows, list):
        raise bad_input("maintenance_windows must be a list of windows.", field="maintenance_windows")
    if len(windows) > MAX_MAINTENANCE_WINDOWS:
        raise bad_input(
            f"A plan has at most {MAX_MAINTENANCE_WINDOWS} maintenance windows.", field="maintenance_windows"
        )
    return [_clean_window(f"Maintenance window {number}", window) for number, window in enumerate(windows, 1)]


def _clean_window(where: str, window: Any) -> dict[str, Any]:
    if not isinstance(window, dict):
        raise bad_input(
            f"{where} must be an object with a time zone, a start and an end.", field="maintenance_windows"
        )
    unknown = sorted(set(window) - _WINDOW_KEYS)
    if unknown:
        raise bad_input(f"{where} has unknown setting(s): {', '.join(unknown)}.", field="maintenance_windows")
    clean: dict[str, Any] = _clean_window_place(where, window)
    clean["time_zone"] = _clean_time_zone(where, window.get("time_zone"))
    for end in ("start", "end"):
        if maintenance.parse_time_of_day(window.get(end)) is None:
            raise bad_input(
                f"{where}: {end} must be a time of day as HH:MM (24-hour).", field="maintenance_windows"
            )
        clean[end] = window[end]
    if clean["start"] == clean["end"]:
        raise bad_input(
            f"{where}: start and end are both {clean['start']}; a window needs time between them.",
            field="maintenance_windows",
        )
    if "weekdays" in window:
        clean["weekdays"] = _clean_weekdays(where, window["weekdays"])
    return clean


def _clean_window_place(where: str, window: dict[str, Any]) -> dict[str, Any]:
    """The site or region a window is for, which some device must be in (a misspelt one would
    silently govern nobody); neither is the whole fleet."""
    given = [scope for scope in maintenance.SCOPES if window.get(scope) is not None]
    if len(given) > 1:
        raise bad_input(
            f"{where} is for a site or for a region, not both; name one, or neither for the whole fleet.",
            field="maintenance_windows",
        )
    if not given:
        return {}
    scope = given[0]
    name = window[scope]
    if not isinstance(name, str) or not name.strip() or _unstorable(name):
        raise bad_input(
            f"{where}: {scope} must be the name of a {scope} of the fleet.", field="maintenance_windows"
        )
    name = name.strip()
    if not Device.objects.filter(**{scope: name}).exists():
        raise bad_input(f"{where}: no device is in {scope} {name!r}.", field="maintenance_windows")
    return {scope: name}


def _clean_time_zone(where: str, name: Any) -> str:
    if not isinstance(name, str) or not name:
        raise bad_input(f"{where} needs a time_zone such as 'Europe/Berlin'.", field="maintenance_windows")
    try:
        # "localtime" is whatever zone the server runs in, not the place's.
        if name == "localtime":
            raise ValueError(name)
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise bad_input(
            f"{where}: {name!r} is not a time zone; use an IANA name such as 'Europe/Berlin'.",
            field="maintenance_windows",
        ) from None
    return name


def _clean_weekdays(where: str, weekdays: Any) -> list[str]:
    """The weekdays in week order, each once."""
    if not isinstance(weekdays, list) or not weekdays:
        raise bad_input(
            f"{where}: weekdays must be a list of days ({', '.join(maintenance.WEEKDAYS)}).",
            field="maintenance_windows",
        )
    for day in weekdays:
        if day not in maintenance.WEEKDAYS:
            raise bad_input(
                f"{where}: {day!r} is not a weekday; use {', '.join(maintenance.WEEKDAYS)}.",
                field="maintenance_windows",
            )
    return [day for day in maintenance.WEEKDAYS if day in weekdays]


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


# --- What would this plan do -------------------------------------------------------------------------


def plan_for_whatif(name: str) -> WhatIfPlan | None:
    """The stored plan called `name`, else the preset of that name, as the what-if replay reads it;
    None when neither exists."""
    plan = RolloutPlan.objects.filter(name=name).first()
    if plan is not None:
        return whatif_plan(plan)
    preset = next((definition for definition in preset_definitions() if definition["name"] == name), None)
    if preset is None:
        return None
    return WhatIfPlan(
        name=name, stages=preset["stages"], gate_config=preset["gate_config"], waves=preset.get("waves")
    )


def whatif_plan(plan: RolloutPlan) -> WhatIfPlan:
    stages = plan.stages if isinstance(plan.stages, list) else []
    return WhatIfPlan(name=plan.name, stages=stages, gate_config=plan.gate_config or {}, waves=plan.waves)


def whatif_fleet(devices: int, *, heartbeat_seconds: float = 5.0) -> FleetModel:
    """The what-if fleet model of `devices` over this fleet's rings."""
    return FleetModel(
        devices=devices, ring_shares=dict(settings.SAFEROLL_RING_SHARES), heartbeat_seconds=heartbeat_seconds
    )
