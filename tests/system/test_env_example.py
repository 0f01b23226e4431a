""".env.example lists every environment variable SafeRoll reads, and nothing it does not read."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
APPS = ("saferoll", "devices", "rollouts", "telemetry", "simulator")
# env_int("NAME", …), os.environ.get("NAME"), os.environ["NAME"], os.getenv("NAME"), across line breaks.
READ = re.compile(r'(?:\benv_\w+\(|os\.environ\.get\(|os\.environ\[|getenv\()\s*"([A-Z][A-Z0-9_]+)"')
# Read by Django, Celery or the test setup, not a setting of SafeRoll's.
NOT_SETTINGS = {"DJANGO_SETTINGS_MODULE"}


def variables_read() -> set[str]:
    names = set()
    for app in APPS:
        for path in (ROOT / app).rglob("*.py"):
            names.update(READ.findall(path.read_text()))
    return names - NOT_SETTINGS


def variables_listed() -> set[str]:
    lines = (ROOT / ".env.example").read_text().splitlines()
    return {line.split("=", 1)[0] for line in lines if re.match(r"[A-Z][A-Z0-9_]*=", line)}


def test_every_variable_read_is_listed():
    assert variables_read() - variables_listed() == set()


def test_every_variable_listed_is_read():
    assert variables_listed() - variables_read() == set()
