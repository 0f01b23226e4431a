"""A bad metrics setting stops SafeRoll at start-up, with a sentence that says what is wrong."""

import os
import subprocess
import sys

import pytest
from django.conf import settings


@pytest.mark.parametrize(
    ("variable", "raw", "error"),
    [
        (
            "SAFEROLL_WORKER_METRICS_PORT",
            "http",
            "SAFEROLL_WORKER_METRICS_PORT must be an integer, not 'http'.",
        ),
        (
            "SAFEROLL_WORKER_METRICS_PORT",
            "70000",
            "SAFEROLL_WORKER_METRICS_PORT must be at most 65535, not 70000.",
        ),
        ("SAFEROLL_METRICS_TOKEN", "secret", "SAFEROLL_METRICS_TOKEN must be at least 16 characters long"),
    ],
)
def test_it_refuses_to_start_with_a_bad_metrics_setting(variable, raw, error):
    started = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "saferoll.settings", variable: raw},
        cwd=settings.BASE_DIR,
        capture_output=True,
        text=True,
    )

    assert started.returncode != 0
    assert f"ImproperlyConfigured: {error}" in started.stderr
