"""Shared fixtures for the data tests: an isolated cache and no network."""
import urllib.error
import urllib.request

import pytest


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """Each test gets its own cache folder and no network: a download attempt
    fails at once, as it would offline (tests that want one install a fake)."""
    monkeypatch.setenv("MYTENSOR_CACHE", str(tmp_path / "cache"))

    def offline(*args, **kwargs):
        raise urllib.error.URLError("network disabled in tests")

    monkeypatch.setattr(urllib.request, "urlopen", offline)


@pytest.fixture
def no_data_env(monkeypatch):
    monkeypatch.delenv("MYTENSOR_DATA", raising=False)
