"""serve deploy --cache-bundle: each target restores the bundle before the server starts, checked
by the target's own validator; a bundle that would never be used is refused before a file is
written."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from openai_server import loader
from openai_server.cache import bundle
from openai_server.cache import manifest as mf
from openai_server.cli import app
from tests.conftest import ecosystem_validator
from tests.deploy.test_compose import validate_compose
from tests.deploy.test_k8s import by_kind, validate

PROFILE = "model: org/m\ndtype: float16\nmax_model_len: 4096\n"
URL = "https://bucket.example/serve/phi3.tar.gz"


def a_bundle(tmp_path: Path, profile_text: str = PROFILE, vllm: str = "0.26.0",
             model_path: str = "") -> Path:  # fmt: skip
    """A bundle as `serve cache pack` writes it, for the profile's compile settings; with a
    `model_path`, holding a vLLM hash directory that start wrote."""
    root = tmp_path / "packed" / "vllm"
    (root / "modelinfos").mkdir(parents=True)
    (root / "modelinfos" / "phi3.json").write_text("{}")
    entries = {"vllm": ["modelinfos/phi3.json"]}
    if model_path:
        (root / "torch_compile_cache" / "ab12").mkdir(parents=True)
        (root / "torch_compile_cache" / "ab12" / "graph").write_text("g")
        entries["vllm"].append("torch_compile_cache/ab12")
    roots = {"vllm": root}
    dump = loader.load_text(profile_text).profile.model_dump(mode="json")
    host = mf.Host(vllm, "2.11.0", mf.Device("gpu", "NVIDIA H200", "9.0"))
    m = mf.build(host, "p", dump, entries, bundle.files_of(roots, entries), "now", model_path)
    bundle.write(tmp_path / "b.tar.gz", m, roots)
    return tmp_path / "b.tar.gz"


def deploy(tmp_path: Path, *args: str) -> tuple[int, str, Path]:
    (tmp_path / "p.yaml").write_text(PROFILE)
    out = tmp_path / "out"
    done = CliRunner().invoke(app, ["deploy", "-p", str(tmp_path / "p.yaml"), "-o", str(out),
                                    *args])  # fmt: skip
    return done.exit_code, done.output, out


def test_compose_mounts_a_bundle_file_that_the_entrypoint_restores(tmp_path: Path) -> None:
    code, output, out = deploy(tmp_path, "--cache-bundle", str(a_bundle(tmp_path)))
    assert code == 0, output
    assert (out / "cache-bundle.tar.gz").read_bytes() == (tmp_path / "b.tar.gz").read_bytes()
    validate_compose(out / "compose.yaml")
    service = yaml.safe_load((out / "compose.yaml").read_text())["services"]["serve"]
    assert service["environment"]["SERVE_CACHE_BUNDLE"] == "/etc/serve/cache-bundle.tar.gz"
    assert "./cache-bundle.tar.gz:/etc/serve/cache-bundle.tar.gz:ro" in service["volumes"]
    assert "kernel-cache:/root/.cache/kernels" in service["volumes"]
    # the image's entrypoint restores it, best effort, before the launch
    entry = (Path(__file__).parents[2] / "entrypoint.sh").read_text()
    assert 'serve cache unpack "$SERVE_CACHE_BUNDLE" --best-effort' in entry


def test_k8s_restores_a_bundle_url_in_an_init_container(tmp_path: Path) -> None:
    code, output, out = deploy(tmp_path, "--target", "k8s", "--cache-bundle", URL)
    assert code == 0, output
    validate(out / "serve.yaml")
    pod = by_kind((out / "serve.yaml").read_text())["Deployment"]["spec"]["template"]["spec"]
    (init,) = pod["initContainers"]
    assert init["command"] == ["serve", "cache", "unpack", URL, "--best-effort"]
    # the same cache folders as the server's, so what it restores is where the server looks
    (server,) = pod["containers"]
    caches = [m for m in server["volumeMounts"] if m["name"] == "cache"]
    assert init["volumeMounts"] == caches
    assert {m["subPath"] for m in caches} == {"huggingface", "vllm", "kernels"}
    # the start budget is the server's own: a bundle that misses leaves a cold start its time
    assert (
        server["startupProbe"]["failureThreshold"] * server["startupProbe"]["periodSeconds"] >= 1800
    )


def test_a_space_restores_its_bundle_into_persistent_storage(tmp_path: Path) -> None:
    code, output, out = deploy(tmp_path, "--target", "hf-space", "--cache-bundle", URL)
    assert code == 0, output
    docker = (out / "Dockerfile").read_text()
    assert f"SERVE_CACHE_BUNDLE={URL}" in docker
    assert "TORCHINDUCTOR_CACHE_DIR=/data/torchinductor" in docker  # UID 1000 cannot write /root
    ecosystem_validator("hadolint", str(out / "Dockerfile"))
    # a file goes into the Space's repository and its image
    code, output, out = deploy(tmp_path, "--target", "hf-space", "--cache-bundle",
                               str(a_bundle(tmp_path)))  # fmt: skip
    assert code == 0, output
    docker = (out / "Dockerfile").read_text()
    assert "COPY --chown=1000:1000 cache-bundle.tar.gz /etc/serve/cache-bundle.tar.gz" in docker
    assert "SERVE_CACHE_BUNDLE=/etc/serve/cache-bundle.tar.gz" in docker
    assert (out / "cache-bundle.tar.gz").is_file()
    ecosystem_validator("hadolint", str(out / "Dockerfile"))


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--target", "k8s", "--cache-bundle", "FILE"], "a pod cannot read a file of this machine"),
        (["--target", "skyserve", "--cache-bundle", URL], "has no step that restores it"),
        (["--cache-bundle", "missing.tar.gz"], "no such file"),
        (["--cache-bundle", "OTHER_VLLM"], "packed with vLLM 0.32.0, the image runs 0.26"),
        (["--cache-bundle", "OTHER_SETTINGS"], "packed for dtype=bfloat16, the profile has "
                                               "dtype=float16"),
    ],
)  # fmt: skip
def test_a_bundle_that_would_never_be_used_is_refused_in_one_line(
    tmp_path: Path, args: list[str], says: str
) -> None:
    files = {
        "FILE": lambda: a_bundle(tmp_path),
        "OTHER_VLLM": lambda: a_bundle(tmp_path, vllm="0.32.0"),
        "OTHER_SETTINGS": lambda: a_bundle(tmp_path, PROFILE.replace("float16", "bfloat16")),
    }
    args = [str(files[a]()) if a in files else a for a in args]
    code, output, out = deploy(tmp_path, *args)
    assert code == 4, output
    (line,) = [ln for ln in output.splitlines() if ln.strip()]
    assert says in line, line
    assert not out.exists()


@pytest.mark.parametrize(
    ("packed_from", "noted"), [("/c/serve/rehearsal/m-1", True), ("org/m", False)]
)
def test_a_bundle_whose_start_named_the_model_otherwise_is_shipped_with_a_note(
    tmp_path: Path, packed_from: str, noted: bool
) -> None:
    """vLLM's graphs are keyed by the model's name: a rehearsal copy's miss the deployment's
    `org/m`, the kernels do not; shipped either way, said where only part will be read."""
    code, output, out = deploy(tmp_path, "--cache-bundle",
                               str(a_bundle(tmp_path, model_path=packed_from)))  # fmt: skip
    assert code == 0, output
    assert (out / "cache-bundle.tar.gz").is_file()
    notes = [ln for ln in output.splitlines() if "note:" in ln]
    if noted:
        (line,) = notes
        assert f"its start loaded {packed_from}, this deployment loads org/m" in line, line
    else:
        assert not notes, notes
