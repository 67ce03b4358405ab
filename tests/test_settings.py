"""serve's own settings: one class, every variable documented, reserved from the profile layer."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from openai_server import loader
from openai_server.cli import app
from openai_server.clients.endpoint import DEFAULT_URL, default_model, endpoint
from openai_server.settings import settings, variables

ROOT = Path(__file__).resolve().parents[1]


def test_the_profile_layer_reserves_exactly_the_serve_settings() -> None:
    assert {v for v in variables() if v.startswith("SERVE_")} == loader.NON_PROFILE_ENV


def test_every_variable_is_in_the_readme() -> None:
    readme = (ROOT / "README.md").read_text()
    for var in variables():
        assert f"| `{var}` |" in readme, var


def test_cache_locations(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for var in ("SERVE_CACHE_DIR", "SERVE_FLAGS_CACHE", "XDG_CACHE_HOME"):
        monkeypatch.delenv(var, raising=False)
    assert settings().cache_root == Path.home() / ".cache" / "serve"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert settings().cache_root == tmp_path / "xdg" / "serve"
    monkeypatch.setenv("SERVE_CACHE_DIR", str(tmp_path / "c"))
    assert settings().cache_root == tmp_path / "c"
    assert settings().flags_cache_dir == tmp_path / "c" / "vllm-flags"
    monkeypatch.setenv("SERVE_FLAGS_CACHE", "")  # empty means unset, as `VAR=` in a shell
    assert settings().flags_cache_dir == tmp_path / "c" / "vllm-flags"
    monkeypatch.setenv("SERVE_FLAGS_CACHE", str(tmp_path / "f"))
    assert settings().flags_cache_dir == tmp_path / "f"


def test_client_defaults_come_from_the_openai_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("OPENAI_BASE_URL", "OPENAI_API_KEY", "MODEL"):
        monkeypatch.delenv(var, raising=False)
    assert endpoint(None, None).root == DEFAULT_URL and default_model(None) is None
    monkeypatch.setenv("OPENAI_BASE_URL", "http://gpu-box:8000/v1")
    monkeypatch.setenv("OPENAI_API_KEY", "k")
    monkeypatch.setenv("MODEL", "phi3")
    ep = endpoint(None, None)
    assert (ep.root, ep.api_key, default_model(None)) == ("http://gpu-box:8000", "k", "phi3")
    assert endpoint("http://other:1", None).root == "http://other:1"
    assert default_model("x") == "x"


def test_serve_profile_stands_in_for_the_profile_option(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SERVE_PROFILE", "phi3-t4")
    result = CliRunner().invoke(app, ["render"])
    assert result.exit_code == 0 and "microsoft/Phi-3-mini-4k-instruct" in result.stdout
    monkeypatch.delenv("SERVE_PROFILE")
    result = CliRunner().invoke(app, ["render"])
    assert result.exit_code == 2 and "SERVE_PROFILE" in result.output
