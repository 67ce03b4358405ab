"""serve deploy --target hf-space / hf-endpoint, checked by Hugging Face's own client.

The Space's README is parsed by huggingface_hub's SpaceCard, its hardware and storage names are
checked against huggingface_hub's enums, its Dockerfile by hadolint, and the Space is created
through the real `HfApi.create_repo`; the endpoint's arguments are passed to the real
`create_inference_endpoint` (by running the rendered apply.py). No request leaves this machine:
huggingface_hub's HTTP client is built over a transport that records each request and answers it.
"""

from __future__ import annotations

import json
import runpy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import huggingface_hub
import pytest
from huggingface_hub import SpaceCard, SpaceHardware, SpaceStorage
from typer.testing import CliRunner

from openai_server import loader
from openai_server.cli import app
from openai_server.deploy import budgets, hf_endpoint, hf_space
from openai_server.deploy.accelerators import Choice, choose
from openai_server.deploy.commands import IMAGE_VLLM, RENTED
from openai_server.errors import RefusedError
from openai_server.profile import Profile
from tests.conftest import ecosystem_validator
from tests.helpers.hub import httpx, intercepted

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "examples" / "deploy"
GOLDEN_PROFILES = {"hf-space": ("phi3-t4", "l4"), "hf-endpoint": ("phi3-t4", "h100-tp2")}


@pytest.fixture
def hub() -> Iterator[list[Any]]:
    """huggingface_hub with its HTTP layer intercepted: yields the requests it sends."""
    sent: list[Any] = []

    def answer(request: Any) -> Any:
        sent.append(request)
        body = json.loads(request.content or b"{}")
        if "/whoami" in str(request.url):  # the namespace of the token's owner
            return httpx.Response(200, json={"type": "user", "name": "me"})
        if "/endpoint/" in str(request.url):
            stamp = "2026-11-27T00:00:00.000Z"
            raw = {**body, "healthRoute": "/health",
                   "status": {"state": "pending", "createdAt": stamp, "updatedAt": stamp}}  # fmt: skip
            return httpx.Response(200, json=raw)
        return httpx.Response(200, json={"url": "https://huggingface.co/spaces/me/x"})

    with intercepted(answer):
        yield sent


def chosen(profile: Profile, target: str) -> Choice:
    offers = RENTED[target](budgets.gpus_needed(profile))
    return choose(profile, offers, target=target, gpu_spec=None, vllm_version=IMAGE_VLLM)


def same_profile(text: str, profile: Profile) -> None:
    again = loader.load_text(text, "profile.yaml").profile
    assert again.model_dump(exclude={"extends"}) == profile.model_dump(exclude={"extends"})


# ---------------------------------------------------------------- hf-space


@pytest.mark.parametrize("name", loader.builtin_names())
def test_every_builtin_profile_renders_a_space_or_is_refused(
    name: str, tmp_path: Path, hub: list[Any]
) -> None:
    profile = loader.load(name, environ={}).profile
    if budgets.gpus_needed(profile) > 1:
        with pytest.raises(RefusedError) as refused:
            hf_space.refuse_unrunnable(profile)
        assert "a Space cannot" in str(refused.value)
        return
    files = hf_space.render(profile, chosen(profile, "hf-space"))
    for file, text in files.items():
        (tmp_path / file).write_text(text)
    card = SpaceCard.load(tmp_path / "README.md")
    meta = card.data
    assert meta.sdk == "docker"
    assert meta.app_port == profile.effective_port
    assert meta.suggested_hardware in {h.value for h in SpaceHardware}
    assert meta.suggested_storage in {s.value for s in SpaceStorage}
    assert meta.startup_duration_timeout == "30m"  # the launcher's ready timeout
    ecosystem_validator("hadolint", str(tmp_path / "Dockerfile"))
    dockerfile = files["Dockerfile"]
    instructions = [line for line in dockerfile.splitlines() if not line.startswith("#")]
    assert "USER 1000" in instructions and not any("/root" in line for line in instructions)
    for cache in ("HF_HOME=/data/", "VLLM_CACHE_ROOT=/data/", "XDG_CACHE_HOME=/data/"):
        assert cache in dockerfile
    assert f"EXPOSE {profile.effective_port}" in dockerfile
    same_profile(files["profile.yaml"], profile)
    # the Space is created by huggingface_hub from what the card says
    huggingface_hub.HfApi(token="hf_test").create_repo(
        "me/space", repo_type="space", space_sdk=meta.sdk, space_hardware=meta.suggested_hardware
    )
    body = json.loads(hub[-1].content)
    assert body["sdk"] == "docker" and body["hardware"] == meta.suggested_hardware


def test_space_hardware_follows_the_gpu_and_the_custom_server_port() -> None:
    profile = loader.load_text("model: microsoft/Phi-3-mini-4k-instruct\nserver: custom\n").profile
    choice = choose(profile, list(hf_space.HARDWARE), target="hf-space", gpu_spec="L4",
                    vllm_version=IMAGE_VLLM)  # fmt: skip
    meta = hf_space.front_matter(profile, choice)
    assert meta["app_port"] == 7860 and meta["suggested_hardware"] == "l4x1"


@pytest.mark.parametrize(
    ("text", "args", "says"),
    [
        ("model: org/m\ntensor_parallel_size: 2\n", [], "a Space cannot"),
        ("model: org/m\nport: 80\n", [], "cannot bind a port below 1024"),
        ("model: org/m\nenv:\n  HF_TOKEN: hf_abcdefghijklmnopqrstuvwxyz0123\n", [], "secret"),
        ("model: microsoft/Phi-3-mini-4k-instruct\n", ["--gpu", "H100"], "rents no such GPU"),
        ("model: microsoft/Phi-3-mini-4k-instruct\n", ["--gpu", "L4:2"], "needs 1 GPU"),
    ],
)
def test_what_a_space_cannot_run_is_refused_in_one_line(
    text: str, args: list[str], says: str, tmp_path: Path
) -> None:
    (tmp_path / "p.yaml").write_text(text)
    out = tmp_path / "out"
    done = CliRunner().invoke(
        app, ["deploy", "--target", "hf-space", "-p", str(tmp_path / "p.yaml"), "-o", str(out),
              *args],
    )  # fmt: skip
    assert done.exit_code in (3, 4), done.output
    assert says in done.output and len(done.output.strip().splitlines()) == 1, done.output
    assert "hf_abcdefghijklmnopqrstuvwxyz0123" not in done.output
    assert not out.exists()


# ---------------------------------------------------------------- hf-endpoint


def endpoint_files(profile: Profile, **options: Any) -> dict[str, str]:
    if profile.model.startswith("builtin:"):
        options.setdefault("repository", "me/any-readable-repo")
    return hf_endpoint.render(profile, chosen(profile, "hf-endpoint"), **options)


def apply(files: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run the rendered apply.py as its user would: in the folder, with their environment."""
    for file, text in files.items():
        (tmp_path / file).write_text(text)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_TOKEN", "hf_user_token")
    runpy.run_path(str(tmp_path / hf_endpoint.APPLY_FILE))


@pytest.mark.parametrize("name", loader.builtin_names())
def test_every_builtin_profile_creates_an_endpoint_through_huggingface_hub(
    name: str, tmp_path: Path, hub: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    profile = loader.load(name, environ={}).profile
    files = endpoint_files(profile)
    apply(files, tmp_path, monkeypatch)
    (request,) = [r for r in hub if "/endpoint/" in str(r.url)]
    assert request.method == "POST"
    assert request.headers["authorization"] == "Bearer hf_user_token"
    body = json.loads(request.content)
    gpus = budgets.gpus_needed(profile)
    compute = body["compute"]
    assert compute["accelerator"] == ("gpu" if gpus else "cpu")
    if gpus:
        assert compute["instanceSize"] == f"x{gpus}"
        assert compute["instanceType"].startswith("nvidia-")
    image = body["model"]["image"]["custom"]
    assert image["healthRoute"] == "/health" and image["port"] == profile.effective_port
    same_profile(body["model"]["env"]["PROFILE_YAML"], profile)
    assert body["model"]["env"]["SERVE_HOST"] == "0.0.0.0"
    assert body["type"] == "authenticated"
    assert body["model"]["secrets"] == {"HF_TOKEN": "hf_user_token"}


def test_an_api_key_makes_a_public_endpoint_with_the_key_as_a_secret(
    tmp_path: Path, hub: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    profile = loader.load("phi3-t4", sets=["api_key_env=MY_KEY"], environ={}).profile
    files = endpoint_files(profile)
    assert "s3cret" not in "".join(files.values())
    monkeypatch.setenv("MY_KEY", "s3cret")
    apply(files, tmp_path, monkeypatch)
    body = json.loads(hub[-1].content)
    # one Authorization header cannot carry both a Hub token and vLLM's key: vLLM checks the key
    assert body["type"] == "public"
    assert body["model"]["secrets"]["MY_KEY"] == "s3cret"


def test_endpoint_options_and_refusals() -> None:
    profile = loader.load("h100-tp2", environ={}).profile
    choice = chosen(profile, "hf-endpoint")
    assert choice.count == 2 and choice.gpu in hf_endpoint.INSTANCES
    args = hf_endpoint.arguments(profile, choice, vendor="gcp", region="us-east4",
                                 instance_type="nvidia-h100", name="llama-70b")  # fmt: skip
    assert (args["vendor"], args["instance_type"], args["instance_size"]) == (
        "gcp", "nvidia-h100", "x2")  # fmt: skip
    with pytest.raises(RefusedError, match="endpoint name"):
        hf_endpoint.arguments(profile, choice, name="Not_A_Name")
    tiny = loader.load("tiny-cpu", environ={}).profile
    with pytest.raises(RefusedError, match="--repository"):
        hf_endpoint.arguments(tiny, chosen(tiny, "hf-endpoint"))
    three = loader.load_text("model: org/m\ntensor_parallel_size: 3\n").profile
    assert hf_endpoint.offers(3) == []
    with pytest.raises(RefusedError, match="rents no such machine"):
        chosen(three, "hf-endpoint")


# ---------------------------------------------------------------- golden files


@pytest.mark.parametrize(
    ("target", "name"), [(t, n) for t, names in GOLDEN_PROFILES.items() for n in names]
)
def test_golden_files_match_the_renderer(target: str, name: str) -> None:
    profile = loader.load(name, environ={}).profile
    render = hf_space.render if target == "hf-space" else hf_endpoint.render
    files = render(profile, chosen(profile, target))
    for file, text in files.items():
        golden = GOLDEN / target / name / file
        assert golden.read_text() == text, (
            f"{golden} drifted: regenerate with "
            f"`serve deploy --target {target} -p {name} -o {golden.parent}`"
        )
