"""serve deploy --target k8s-lws and --target hosts: a profile over several nodes.

The LeaderWorkerSet is validated against LeaderWorkerSet's own CRD schema (tests/schemas/, v0.10.0,
converted by tests/helpers/crd_schema.py) with check-jsonschema; the ConfigMap, the Service and
both pod templates (as core PodTemplates) by kubernetes-validate, strict; the shell the pods and
the hosts run by shellcheck, and the leader's wait is run. Numbers are read back from the files;
golden files are kept for the example profile."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from openai_server import loader
from openai_server.cli import app
from openai_server.deploy import budgets, hosts, k8s, k8s_lws
from openai_server.errors import ExitCode
from openai_server.launch.options import Timing
from tests.conftest import ecosystem_validator
from tests.helpers import crd_schema

ROOT = Path(__file__).resolve().parents[2]
CRD = ROOT / "tests" / "schemas" / "leaderworkerset.x-k8s.io_leaderworkersets.yaml"
EXAMPLE = ROOT / "examples" / "profiles" / "llama-405b-2x8.yaml"
GOLDEN_LWS = ROOT / "examples" / "deploy" / "k8s-lws" / EXAMPLE.stem
GOLDEN_HOSTS = ROOT / "examples" / "deploy" / "hosts" / EXAMPLE.stem
# The held-back shape: tensor parallel 8 x pipeline parallel 2 over 2 nodes of 8 GPUs (not the
# example's text, so that the golden files are not the only thing that checks it)
TP8_PP2_2X8 = (
    "model: org/big\ntensor_parallel_size: 8\npipeline_parallel_size: 2\nnodes: 2\n"
    "gpus_per_node: 8\ndistributed_executor_backend: mp\napi_key_env: MY_KEY\n"
    "shutdown_timeout: 60\n"
)


@pytest.fixture(scope="module")
def lws_schema(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return crd_schema.write(CRD, "v1", tmp_path_factory.mktemp("crd") / "lws.schema.json")


def validate(text: str, schema: Path, where: Path) -> dict[str, dict[str, Any]]:
    """Every object of serve.yaml through its ecosystem's validator; the objects by kind."""
    docs = {d["kind"]: d for d in yaml.safe_load_all(text)}
    assert list(docs) == ["ConfigMap", "LeaderWorkerSet", "Service"]
    lws = where / "lws.yaml"
    lws.write_text(yaml.safe_dump(docs["LeaderWorkerSet"]))
    ecosystem_validator("check-jsonschema", "--schemafile", str(schema), str(lws))
    group = docs["LeaderWorkerSet"]["spec"]["leaderWorkerTemplate"]
    templates = [
        {"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": f"serve-{role}"},
         "template": group[f"{role}Template"]}
        for role in ("leader", "worker")
    ]  # fmt: skip
    core = where / "core.yaml"
    core.write_text(yaml.safe_dump_all([docs["ConfigMap"], docs["Service"], *templates]))
    ecosystem_validator("kubernetes-validate", "--strict", "-k", k8s.KUBERNETES_VERSION, "--quiet",
                        str(core))  # fmt: skip
    return docs


def pod(docs: dict[str, dict[str, Any]], role: str) -> dict[str, Any]:
    return docs["LeaderWorkerSet"]["spec"]["leaderWorkerTemplate"][f"{role}Template"]["spec"]  # type: ignore[no-any-return]


def script(container: dict[str, Any]) -> str:
    command = container["command"]
    assert command[:4] == ["tini", "--", "sh", "-c"]
    return command[4]  # type: ignore[no-any-return]


def test_held_back_tp8_pp2_over_two_nodes_of_eight(lws_schema: Path, tmp_path: Path) -> None:
    profile = loader.load_text(TP8_PP2_2X8).profile
    text = k8s_lws.render(profile)["serve.yaml"]
    docs = validate(text, lws_schema, tmp_path)
    lws = docs["LeaderWorkerSet"]
    assert lws["apiVersion"] == "leaderworkerset.x-k8s.io/v1"
    spec = lws["spec"]
    assert spec["replicas"] == 1 and spec["startupPolicy"] == "LeaderCreated"
    group = spec["leaderWorkerTemplate"]
    assert group["size"] == 2
    assert group["restartPolicy"] == "RecreateGroupOnPodRestart"
    leader, worker = pod(docs, "leader"), pod(docs, "worker")
    for p in (leader, worker):
        (c,) = p["containers"]
        assert c["resources"]["limits"]["nvidia.com/gpu"] == 8  # gpus_per_node, per pod
        shm = next(v for v in p["volumes"] if v["name"] == "dshm")["emptyDir"]
        assert shm == {"medium": "Memory", "sizeLimit": "16Gi"}
        assert {"name": "dshm", "mountPath": "/dev/shm"} in c["volumeMounts"]
        assert p["terminationGracePeriodSeconds"] == budgets.stop_grace_s(profile, Timing()) == 80
        env = {e["name"]: e for e in c["env"]}
        assert env["VLLM_HOST_IP"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"
        assert env["MY_KEY"]["valueFrom"]["secretKeyRef"] == {
            "name": "serve-secrets",
            "key": "MY_KEY",
        }
        assert script(c).rstrip().endswith(k8s_lws.NODE_COMMAND)  # the same per-node command
    # probes on the leader only; its start probe covers the wait for the workers and the start
    (lc,) = leader["containers"]
    (wc,) = worker["containers"]
    startup = lc["startupProbe"]
    assert startup["exec"]["command"][:2] == ["serve", "probe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 2 * 1800
    assert lc["readinessProbe"]["exec"]["command"][:2] == ["serve", "probe"]
    assert lc["livenessProbe"]["httpGet"] == {"path": "/health", "port": "http"}
    assert not {"startupProbe", "readinessProbe", "livenessProbe", "ports"} & set(wc)
    # the join wait: the leader waits for each of LWS_GROUP_SIZE - 1 workers, for the join budget
    lead = script(lc)
    assert 'while [ "$i" -lt "$LWS_GROUP_SIZE" ]' in lead
    assert "getent hosts" in lead and f"+ {budgets.join_budget_s(Timing())} ))" in lead
    assert lead.index("getent hosts") < lead.index(k8s_lws.NODE_COMMAND)
    assert 'getent hosts "$LWS_LEADER_ADDRESS"' in script(wc)  # a worker waits for the leader
    # the caches: one claim per pod, since one RWO volume cannot follow pods onto two nodes
    (claim,) = group["volumeClaimTemplates"]
    assert claim["metadata"]["name"] == "cache" and claim["spec"]["accessModes"] == [
        "ReadWriteOnce"
    ]
    assert all(v["name"] != "cache" for v in leader["volumes"])
    # the Service reaches the leader only
    assert docs["Service"]["spec"]["selector"] == {
        "leaderworkerset.sigs.k8s.io/name": "serve", "leaderworkerset.sigs.k8s.io/worker-index": "0"
    }  # fmt: skip
    again = loader.load_text(docs["ConfigMap"]["data"]["profile.yaml"], "profile.yaml").profile
    assert again.model_dump(exclude={"extends"}) == profile.model_dump(exclude={"extends"})


def test_an_existing_claim_runtime_class_and_node_selector_reach_both_pods(
    lws_schema: Path, tmp_path: Path
) -> None:
    profile = loader.load(str(EXAMPLE), environ={}).profile
    text = k8s_lws.render(profile, existing_claim="models", runtime_class="nvidia",
                          node_selector={"gpu": "h100"})["serve.yaml"]  # fmt: skip
    docs = validate(text, lws_schema, tmp_path)
    assert "volumeClaimTemplates" not in docs["LeaderWorkerSet"]["spec"]["leaderWorkerTemplate"]
    for role in ("leader", "worker"):
        p = pod(docs, role)
        cache = next(v for v in p["volumes"] if v["name"] == "cache")
        assert cache == {"name": "cache", "persistentVolumeClaim": {"claimName": "models"}}
        assert p["runtimeClassName"] == "nvidia" and p["nodeSelector"] == {"gpu": "h100"}


def test_the_lws_crd_schema_refuses_what_the_api_server_would(
    lws_schema: Path, tmp_path: Path
) -> None:
    # the converted schema is a real check: a wrong policy, an unknown field and a string size fail
    base = next(d for d in yaml.safe_load_all(k8s_lws.render(loader.load_text(TP8_PP2_2X8).profile)["serve.yaml"])
                if d["kind"] == "LeaderWorkerSet")  # fmt: skip
    exe = Path(sys.executable).with_name("check-jsonschema")
    for change in ({"restartPolicy": "Sometimes"}, {"sizes": 2}, {"size": "2"}):
        doc = yaml.safe_load(yaml.safe_dump(base))
        doc["spec"]["leaderWorkerTemplate"].update(change)
        bad = tmp_path / "bad.yaml"
        bad.write_text(yaml.safe_dump(doc))
        done = subprocess.run(
            [str(exe), "--schemafile", str(lws_schema), str(bad)], capture_output=True, text=True
        )
        assert done.returncode == 1, (change, done.stdout)


# ---------------------------------------------------------------- the shell the pods run


def fake_bin(tmp_path: Path, resolvable: set[str]) -> dict[str, str]:
    """PATH with a getent that resolves only `resolvable` (and logs every ask), a serve that
    prints its argv, and a sleep that does not sleep long."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "asked"
    names = " ".join(sorted(resolvable))
    (bin_dir / "getent").write_text(
        f'#!/bin/sh\necho "$2" >> "{log}"\nfor n in {names}; do [ "$n" = "$2" ] && exit 0; done\nexit 2\n'
    )
    (bin_dir / "serve").write_text('#!/bin/sh\necho "serve $*"\n')
    (bin_dir / "sleep").write_text("#!/bin/sh\nexec /bin/sleep 0.05\n")
    for f in bin_dir.iterdir():
        f.chmod(0o755)
    return {"PATH": f"{bin_dir}:{os.environ['PATH']}", "PROFILE": "/etc/serve/profile.yaml"}


def run_script(text: str, env: dict[str, str], index: int) -> subprocess.CompletedProcess[str]:
    lws = {"LWS_LEADER_ADDRESS": "serve-0.serve.default", "LWS_GROUP_SIZE": "3",
           "LWS_WORKER_INDEX": str(index)}  # fmt: skip
    return subprocess.run(["sh", "-c", text], env={**env, **lws}, capture_output=True, text=True,
                          timeout=60)  # fmt: skip


def test_the_leader_waits_for_every_worker_then_starts_rank_0(tmp_path: Path) -> None:
    workers = {"serve-0-1.serve.default", "serve-0-2.serve.default"}
    env = fake_bin(tmp_path, workers)
    done = run_script(k8s_lws.leader_script(Timing()), env, 0)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == (
        "serve launch --profile /etc/serve/profile.yaml --node-rank 0 --head-address serve-0.serve.default"
    )
    assert (tmp_path / "asked").read_text().split() == sorted(workers)


def test_the_leader_gives_up_when_a_worker_never_appears(tmp_path: Path) -> None:
    env = fake_bin(tmp_path, {"serve-0-1.serve.default"})
    done = run_script(k8s_lws.leader_script(Timing(ready_timeout=1)), env, 0)
    assert done.returncode == ExitCode.START_FAILED
    assert done.stdout == ""  # the server was never started
    assert done.stderr.strip().splitlines()[-1] == (
        "serve: error: worker 2 has no address after 1 s; the group restarts"
    )


def test_a_worker_waits_for_the_leader_then_joins_it(tmp_path: Path) -> None:
    env = fake_bin(tmp_path, {"serve-0.serve.default"})
    done = run_script(k8s_lws.worker_script(Timing()), env, 1)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith("--node-rank 1 --head-address serve-0.serve.default")


def test_pod_and_host_scripts_pass_shellcheck(tmp_path: Path) -> None:
    profile = loader.load(str(EXAMPLE), environ={}).profile
    files = []
    for name, text in (("leader.sh", k8s_lws.leader_script(Timing())),
                       ("worker.sh", k8s_lws.worker_script(Timing())),
                       *hosts.render(profile).items()):  # fmt: skip
        if name.endswith(".sh"):
            (tmp_path / name).write_text(text)
            files.append(str(tmp_path / name))
    assert len(files) == 4
    ecosystem_validator("shellcheck", "--shell=sh", *files)


# ---------------------------------------------------------------- hosts


def test_hosts_writes_one_script_per_node_with_the_head_address_as_argument(tmp_path: Path) -> None:
    profile = loader.load_text(TP8_PP2_2X8.replace("nodes: 2\ngpus_per_node: 8", "nodes: 4\ngpus_per_node: 4")
                               .replace("tensor_parallel_size: 8", "tensor_parallel_size: 4")
                               .replace("pipeline_parallel_size: 2", "pipeline_parallel_size: 4")).profile  # fmt: skip
    files = hosts.render(profile)
    assert sorted(files) == ["node-0.sh", "node-1.sh", "node-2.sh", "node-3.sh", "profile.yaml"]
    for rank in range(4):
        (tmp_path / f"node-{rank}.sh").write_text(files[f"node-{rank}.sh"])
    env = fake_bin(tmp_path, set())
    env.pop("PROFILE")  # by default, the profile beside the script
    done = subprocess.run(["sh", str(tmp_path / "node-3.sh"), "10.0.0.1"], env=env,
                          capture_output=True, text=True)  # fmt: skip
    assert done.stdout.strip() == (
        f"serve launch --profile {tmp_path}/profile.yaml --node-rank 3 --head-address 10.0.0.1"
    )
    moved = subprocess.run(["sh", str(tmp_path / "node-3.sh"), "10.0.0.1"], capture_output=True,
                           env={**env, "PROFILE": "/srv/p.yaml"}, text=True)  # fmt: skip
    assert "--profile /srv/p.yaml --node-rank 3" in moved.stdout
    missing = subprocess.run(
        ["sh", str(tmp_path / "node-0.sh")], env=env, capture_output=True, text=True
    )
    assert missing.returncode != 0 and "usage: node-0.sh HEAD_ADDRESS" in missing.stderr
    with_addr = loader.load_text(TP8_PP2_2X8 + "master_addr: head.internal\n").profile
    assert 'head_address="${1:-head.internal}"' in hosts.render(with_addr)["node-1.sh"]


# ---------------------------------------------------------------- golden files and the CLI


def test_golden_files_match_the_renderer() -> None:
    profile = loader.load(str(EXAMPLE), environ={}).profile
    for golden, files, target in ((GOLDEN_LWS, k8s_lws.render(profile), "k8s-lws"),
                                  (GOLDEN_HOSTS, hosts.render(profile), "hosts")):  # fmt: skip
        assert sorted(p.name for p in golden.iterdir()) == sorted(files)
        for name, text in files.items():
            assert (golden / name).read_text() == text, (
                f"{golden / name} drifted: regenerate with `serve deploy --target {target} "
                f"-p {EXAMPLE.relative_to(ROOT)} --gpu H100:8 -o {golden.relative_to(ROOT)}`"
            )


def test_golden_lws_passes_the_crd_schema(lws_schema: Path, tmp_path: Path) -> None:
    validate((GOLDEN_LWS / "serve.yaml").read_text(), lws_schema, tmp_path)
    # the shipped CRD is the release the module names, and its source is written down
    notes = (CRD.parent / "README.md").read_text()
    assert f"tag `{k8s_lws.LWS_RELEASE}`" in notes and "Apache-2.0" in notes


def test_serve_deploy_renders_multi_node_targets_and_refuses_mismatched_ones(
    tmp_path: Path,
) -> None:
    runner = CliRunner()
    done = runner.invoke(app, ["deploy", "--target", "k8s-lws", "-p", str(EXAMPLE), "--gpu", "H100:8",
                               "-o", str(tmp_path / "lws")])  # fmt: skip
    assert done.exit_code == 0, done.output
    assert [p.name for p in (tmp_path / "lws").iterdir()] == ["serve.yaml"]
    done = runner.invoke(
        app, ["deploy", "--target", "hosts", "-p", str(EXAMPLE), "-o", str(tmp_path / "h")]
    )
    assert done.exit_code == 0, done.output
    assert os.access(tmp_path / "h" / "node-1.sh", os.X_OK)
    short = runner.invoke(app, ["deploy", "--target", "k8s-lws", "-p", str(EXAMPLE), "--gpu", "H100:4",
                                "-o", str(tmp_path / "x")])  # fmt: skip
    assert short.exit_code == ExitCode.REFUSED and "gpus_per_node = 8 > 4" in short.output
    for target in ("k8s", "compose", "skyserve"):
        one = runner.invoke(
            app, ["deploy", "--target", target, "-p", str(EXAMPLE), "-o", str(tmp_path / "x")]
        )
        assert one.exit_code == ExitCode.REFUSED, one.output
        assert (
            "the profile spans 2 nodes" in one.output and "--target k8s-lws or hosts" in one.output
        )
    single = runner.invoke(
        app, ["deploy", "--target", "k8s-lws", "-p", "phi3-t4", "-o", str(tmp_path / "x")]
    )
    assert single.exit_code == ExitCode.REFUSED and "runs on one node" in single.output
    assert not (tmp_path / "x").exists()
