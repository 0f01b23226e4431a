import pytest


@pytest.fixture(autouse=True)
def fast_test_settings(settings, tmp_path):
    """Uploaded artifacts go to a fresh folder per test; passwords hash fast (tests only)."""
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    return settings
