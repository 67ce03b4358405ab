"""Hostile and impossible profiles: each refused by the CLI with exit 3 and one line, in bounded
time and memory, never a traceback; legal edge cases still accepted.

Every class of the issue has a row: hostile YAML (size, encodings, nesting, aliases, numbers),
values vLLM could never use (control characters, host, served_model_name, unknown built-in
models), secrets written in a profile. The same limits hold for `extends`, `--set` and SERVE_*.
"""

from __future__ import annotations

import codecs
import itertools
import random
import re
import time
import tracemalloc
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from typer.testing import CliRunner

from openai_server import yaml_safety
from openai_server.cli import app
from openai_server.errors import ExitCode

runner = CliRunner()
B = "model: org/m\n"
HF = "hf_" + "AbCdEfGhIjKlMnOpQrStUvWxYz012345678"  # shaped like a Hugging Face token

# In-process bounds per input (the interpreter's start is not counted: it is the same for a valid
# profile). Measured refusals take under 0.4 s and 5 MB on a loaded 2-core machine.
MAX_SECONDS = 1.5
MAX_TRACED_BYTES = 64 << 20


def laughs(levels: int = 9, fanout: int = 9, indent: str = "") -> str:
    """'Billion laughs': level i is a list of `fanout` aliases of level i - 1."""
    names = [f"l{i}" for i in range(levels)]
    rows = [f"{indent}{names[0]}: &{names[0]} [{', '.join(['lol'] * fanout)}]\n"]
    for prev, name in itertools.pairwise(names):
        rows.append(f"{indent}{name}: &{name} [{', '.join(['*' + prev] * fanout)}]\n")
    return "".join(rows)


def flow_laughs(levels: int = 9) -> str:
    items = ["&a0 [x, x, x, x, x, x, x, x, x]"]
    items += [f"&a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, levels)]
    return "[" + ", ".join(items) + "]"


def random_binary() -> bytes:
    rng = random.Random(7)
    return bytes(rng.randrange(256) for _ in range(4096))


@dataclass
class Case:
    id: str
    files: dict[str, str | bytes]  # written into the working directory; p.yaml is validated
    line: str  # a fragment of the one error line
    args: list[str] = field(default_factory=lambda: ["validate", "p.yaml"])
    env: dict[str, str] = field(default_factory=dict)
    secret: str | None = None  # must appear nowhere in the output


def p(text: str | bytes) -> dict[str, str | bytes]:
    return {"p.yaml": text}


HOSTILE = [
    # ---- 1. hostile YAML: aliases, nesting, size, numbers
    Case("alias-bomb", p(B + "speculative_config:\n" + laughs(indent="  ")),
         "p.yaml:6: alias *l2 expands the document to more than 5,000 YAML nodes"),
    Case("alias-bomb-top-level", p(laughs() + B), "expands the document to more than 5,000 YAML nodes"),
    Case("alias-bomb-in-mapping-merge", p("d: &d {a: [x, x, x, x, x, x, x, x]}\n" + "".join(
        f"e{i}: &e{i} [{', '.join([f'*e{i - 1}' if i else '*d'] * 8)}]\n" for i in range(6)) + B),
        "YAML nodes (aliases expanded)"),
    Case("recursive-alias", p(B + "speculative_config: &a {x: *a}\n"),
         "p.yaml:2: alias *a is inside the node it refers to"),
    Case("deep-flow-nesting", p(B + "speculative_config: " + "[" * 100_000 + "]" * 100_000 + "\n"),
         "p.yaml:2: YAML nesting deeper than 32 levels; a profile nests 3 or 4"),
    Case("deep-block-nesting", p(B + "speculative_config:\n" + "".join(f"{' ' * i}k{i}:\n" for i in range(1, 60))),
         "p.yaml:33: YAML nesting deeper than 32 levels"),
    Case("deep-nesting-through-aliases", p("a: &a " + "[" * 20 + "1" + "]" * 20 + "\nb: &b " + "[" * 20 + "*a" + "]" * 20 + "\n" + B),
         "p.yaml:2: YAML nesting deeper than 32 levels"),
    Case("many-nodes", p(B + "extra_args: [" + ",".join(["a"] * 100_000) + "]\n"),
         "p.yaml:2: the document has more than 5,000 YAML nodes"),
    Case("20-MB-file", p(B + "description: '" + "x" * (20 << 20) + "'\n"),
         "p.yaml: 20.0 MiB is too large for a profile; the limit is 1 MiB"),
    Case("just-over-1-MiB", p(B + "# " + "x" * (1 << 20) + "\n"), "bytes is too large for a profile; the limit is 1 MiB"),
    Case("sexagesimal-number-bomb", p(B + "seed: " + "1:" * 300_000 + "1\n"), "p.yaml:2: seed: '1:1:1:"),
    Case("5000-digit-integer", p(B + "max_num_batched_tokens: !!int " + "9" * 5000 + "\n"),
         "p.yaml:2: a number of 5,000 characters; at most 64"),
    Case("impossible-timestamp", p(B + "revision: 2024-13-45\n"),
         "p.yaml:2: cannot read this value as !!timestamp: month must be in 1..12"),
    Case("two-documents", p(B + "---\n" + B), "expected a single document in the stream but found another"),
    Case("object-tag", p("model: !!python/object/apply:os.system ['true']\n"),
         "YAML tags that construct objects are not allowed"),
    # ---- 1. encodings
    Case("utf16-with-bom", p(codecs.BOM_UTF16_LE + (B + "dtype: half\n").encode("utf-16-le")),
         "p.yaml: looks like UTF-16 (little-endian) text (byte-order mark); save it as UTF-8"),
    Case("utf16-without-bom", p((B + "dtype: half\n").encode("utf-16-be")),
         "p.yaml: looks like UTF-16 (big-endian) text; save it as UTF-8"),
    Case("utf32", p(B.encode("utf-32")), "p.yaml: looks like UTF-32 (little-endian) text"),
    Case("binary-file", p(random_binary()), "p.yaml: binary file (NUL bytes"),
    Case("png-file", p(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(64)), "p.yaml: binary file (NUL bytes"),
    Case("latin-1-file", p((B + "description: caf\u00e9\n").encode("latin-1")),
         "p.yaml: not UTF-8 text: byte 0xe9 at line 2"),
    Case("raw-control-character", p(B.encode() + b"description: bell\x07\n"),
         "p.yaml:2: control character U+0007 is not allowed in a profile"),
    # ---- 2. values vLLM could never use
    Case("nul-escape-in-an-argument", p(B + 'tokenizer: "org/tok\\0"\n'),
         "p.yaml:2: tokenizer: control character U+0000 at position 7"),
    Case("escape-sequence-in-extra-args", p(B + 'extra_args: ["--foo", "\\e[2J"]\n'),
         "p.yaml:2: extra_args.1: control character U+001B at position 0"),
    Case("newline-in-env-value", p(B + 'env: {MY_VAR: "a\\nb"}\n'), "p.yaml:2: env.MY_VAR: control character U+000A"),
    Case("c1-control-in-python", p(B + 'python: "/usr/bin/python\\x9b"\n'), "python: control character U+009B"),
    Case("control-in-speculative-config", p(B + 'speculative_config: {method: "ngram\\x01"}\n'),
         "speculative_config: control character U+0001 at position 5 in method"),
    Case("date-in-speculative-config", p(B + "speculative_config: {since: 2024-01-01}\n"),
         "speculative_config: since: a date is not JSON"),
    Case("host-not-a-name", p(B + "host: not a host!\n"),
         "p.yaml:2: host: 'not a host!' is not allowed: not an IP address or a host name"),
    Case("host-bad-ipv4", p(B + "host: 999.1.1.1\n"), "host: '999.1.1.1' is not allowed"),
    Case("host-in-brackets", p(B + "host: '[::1]'\n"), "(no brackets around an IPv6 address)"),
    Case("host-with-underscore", p(B + "host: my_host\n"), "host: 'my_host' is not allowed"),
    Case("host-url", p(B + "host: http://0.0.0.0\n"), "host: 'http://0.0.0.0' is not allowed"),
    Case("served-name-leading-space", p(B + "served_model_name: ' tiny'\n"),
         "served_model_name: ' tiny' is not allowed: ' ' cannot be in a model name that clients send"),
    Case("served-name-query", p(B + "served_model_name: a?b\n"), "'?' cannot be in a model name"),
    Case("served-name-too-long", p(B + f"served_model_name: {'x' * 300}\n"), "served_model_name: 300 characters; at most 256"),
    Case("served-name-trailing-slash", p(B + "served_model_name: org/\n"), "cannot start or end with '/'"),
    Case("model-read-as-an-option", p("model: --help\n"), "model: '--help' is not allowed: starts with '-'"),
    Case("unknown-builtin-model-validate", p("model: builtin:tiny-llama\n"),
         "p.yaml:1: model: 'builtin:tiny-llama' is not allowed: unknown built-in model; built-in: builtin:tiny-phi3"),
    Case("unknown-builtin-model-render", p("model: builtin:tiny-llama\n"), "unknown built-in model",
         args=["render", "-p", "./p.yaml"]),
    Case("unknown-builtin-model-check", p("model: builtin:tiny-llama\n"), "unknown built-in model",
         args=["check", "-p", "./p.yaml", "--vllm-version", "0.26"]),
    Case("unknown-builtin-model-launch", p("model: builtin:tiny-llama\n"), "unknown built-in model",
         args=["launch", "-p", "./p.yaml", "--no-check", "--ready-timeout", "1", "--set", "python=/bin/false"]),
    Case("seed-beyond-numpy", p(B + "seed: 4294967296\n"), "seed: 4294967296 is not allowed"),
    # ---- 4. secrets
    Case("env-hf-token", p(B + f"env:\n  HF_TOKEN: {HF}\n"),
         "p.yaml:3: env.HF_TOKEN: a secret must not be written in a profile", secret=HF),
    Case("env-vllm-api-key", p(B + "env: {VLLM_API_KEY: s3cr3t-Value}\n"),
         "env.VLLM_API_KEY: a secret must not be written in a profile", secret="s3cr3t-Value"),
    Case("env-openai-api-key", p(B + "env: {OPENAI_API_KEY: sk-s3cr3t}\n"), "or name it with api_key_env",
         secret="sk-s3cr3t"),
    Case("env-hub-token", p(B + "env: {HUGGING_FACE_HUB_TOKEN: s3cr3t}\n"), "env.HUGGING_FACE_HUB_TOKEN:",
         secret="s3cr3t"),
    Case("env-lowercase-secret-suffix", p(B + "env: {db_secret: s3cr3t}\n"), "env.db_secret: a secret", secret="s3cr3t"),
    Case("env-password", p(B + "env: {S3_PASSWORD: s3cr3t}\n"), "env.S3_PASSWORD: a secret", secret="s3cr3t"),
    Case("env-secret-number", p(B + "env: {MY_API_KEY: 123456789}\n"), "env.MY_API_KEY: a secret",
         secret="123456789"),
    Case("env-token-shaped-value", p(B + f"env: {{MY_VAR: {HF}}}\n"), "env.MY_VAR: a secret", secret=HF),
    Case("extra-args-api-key", p(B + "extra_args: ['--api-key', 's3cr3t']\n"),
         "p.yaml:2: extra_args: --api-key: a secret must not be written in a profile", secret="s3cr3t"),
    Case("extra-args-api-key-equals", p(B + "extra_args: ['--api-key=s3cr3t']\n"), "extra_args: --api-key:",
         secret="s3cr3t"),
    Case("extra-args-api-key-prefix", p(B + "extra_args: ['--api-k', 's3cr3t']\n"), "extra_args: --api-key:",
         secret="s3cr3t"),
    Case("extra-args-hf-token", p(B + "extra_args: ['--hf-token', 's3cr3t']\n"), "extra_args: --hf-token:",
         secret="s3cr3t"),
    Case("set-env-secret", {}, "--set env.HF_TOKEN: env.HF_TOKEN: a secret must not be written",
         args=["render", "-p", "tiny-cpu", "--set", f"env.HF_TOKEN={HF}"], secret=HF),
    Case("set-extra-args-api-key", {}, "--set extra_args: extra_args: --api-key: a secret",
         args=["render", "-p", "tiny-cpu", "--set", "extra_args=[--api-key, s3cr3t]"], secret="s3cr3t"),
    Case("serve-env-secret", {}, "environment SERVE_ENV__HF_TOKEN: env.HF_TOKEN: a secret",
         args=["render", "-p", "tiny-cpu"], env={"SERVE_ENV__HF_TOKEN": HF}, secret=HF),
    # ---- 1. the same limits for extends, --set and SERVE_*
    Case("extends-a-binary-file", {"p.yaml": "extends: bin.yaml\nmodel: m\n", "bin.yaml": random_binary()},
         "bin.yaml: binary file (NUL bytes"),
    Case("extends-a-20-MB-file", {"p.yaml": "extends: big.yaml\n", "big.yaml": B + "#" * (20 << 20)},
         "big.yaml: 20.0 MiB is too large for a profile"),
    Case("extends-an-alias-bomb", {"p.yaml": "extends: lol.yaml\n", "lol.yaml": laughs() + B},
         "lol.yaml:4: alias *l2 expands the document"),
    Case("extends-chain-of-20", {"p.yaml": "extends: c1.yaml\n", **{f"c{i}.yaml": f"extends: c{i + 1}.yaml\n" for i in range(1, 20)}, "c20.yaml": B},
         "c15.yaml:1: extends: a chain of more than 16 profiles"),
    Case("set-alias-bomb", {}, "alias *a2 expands the document to more than 5,000 YAML nodes",
         args=["render", "-p", "tiny-cpu", "--set", f"extra_args={flow_laughs()}"]),
    Case("set-deep-nesting", {}, "--set speculative_config={a: {a: {a:",
         args=["render", "-p", "tiny-cpu", "--set", "speculative_config=" + "{a: " * 40 + "1" + "}" * 40]),
    Case("set-escape-sequence", {}, "--set served_model_name: served_model_name: control character U+001B",
         args=["render", "-p", "tiny-cpu", "--set", "served_model_name=a\x1b[31mb"]),
    Case("set-deep-key", {}, "--set a.a.a.a.a.a.a", args=["render", "-p", "tiny-cpu", "--set", "a." * 20_000 + "b=1"]),
    Case("serve-env-deep-key", {}, "environment SERVE_SAMPLING__A__A", args=["render", "-p", "tiny-cpu"],
         env={"SERVE_SAMPLING__" + "A__" * 2000 + "B": "1"}),
    Case("serve-env-alias-bomb", {}, "environment SERVE_EXTRA_ARGS: alias *a2 expands the document",
         args=["render", "-p", "tiny-cpu"], env={"SERVE_EXTRA_ARGS": flow_laughs()}),
    Case("serve-env-host", {}, "environment SERVE_HOST: host: 'bad host' is not allowed",
         args=["render", "-p", "tiny-cpu"], env={"SERVE_HOST": "bad host"}),
]  # fmt: skip


@pytest.fixture(scope="module", autouse=True)
def _imported() -> None:
    """`launch` and `check` import their modules on first use: not the refusal's cost."""
    import openai_server.launch.supervisor
    import openai_server.preflight.check  # noqa: F401


@pytest.mark.parametrize("case", HOSTILE, ids=[c.id for c in HOSTILE])
def test_hostile_profile_is_refused_in_one_line(
    case: Case, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    for name, content in case.files.items():
        path = tmp_path / name
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
    start = time.perf_counter()
    result = runner.invoke(app, case.args, env=case.env)
    elapsed = time.perf_counter() - start
    assert result.exit_code == ExitCode.PROFILE, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    lines = [line for line in result.stderr.splitlines() if line]
    assert len(lines) == 1, lines
    assert lines[0].startswith("serve: error: ")
    assert case.line in lines[0]
    assert lines[0].isprintable() and len(lines[0]) < 2100
    if case.secret:
        assert case.secret not in result.output
    assert elapsed < MAX_SECONDS
    # memory apart: tracing every allocation slows the run down severalfold
    tracemalloc.start()
    try:
        runner.invoke(app, case.args, env=case.env)
        assert tracemalloc.get_traced_memory()[1] < MAX_TRACED_BYTES
    finally:
        tracemalloc.stop()


# ---------------------------------------------------------------- legal edge cases

VALID = {
    "utf8-bom": "\ufeff" + B + "dtype: half\n",
    "crlf-line-ends": (B + "dtype: half\nsampling:\n  temperature: 0.5\n").replace("\n", "\r\n"),
    "unicode-and-tab-in-description": 'description: "Caf\u00e9 \u2615 \u6a21\u578b\tprofile"\n' + B,
    "folded-description": "description: >\n  a long\n  description\n" + B,
    "path-with-spaces": "model: /models/My Model v2\n",
    "unusual-served-name": B + "served_model_name: org/model:v1.2@q4+x~y\n",
    "unicode-served-name": B + "served_model_name: \u6a21\u578b-v1\n",
    "served-name-256": B + f"served_model_name: {'x' * 256}\n",
    "ipv6-host": B + "host: '::1'\n",
    "ipv6-any-host": B + "host: '::'\n",
    "ipv6-scoped-host": B + "host: 'fe80::1%eth0'\n",
    "host-name": B + "host: my-host.example.com\n",
    "host-fqdn-dot": B + "host: my-host.example.com.\n",
    "host-localhost": B + "host: localhost\n",
    "host-digits-label": B + "host: 1node.example\n",
    "limits": B + "port: 65535\nseed: 4294967295\nmax_num_seqs: 65536\n",
    "inline-chat-template": B
    + "chat_template: |\n  {% for m in messages %}{{ m['content'] }}\n  {% endfor %}\n",
    "anchors-and-aliases": B + "sampling: &s {temperature: 0.2}\nspeculative_config: {opts: *s}\n",
    "merge-key": B + "speculative_config: {<<: {method: ngram}, num_speculative_tokens: 2}\n",
    "empty-secret-unsets": B + "env: {HF_TOKEN: ''}\n",
    "secret-like-switch": B + "env: {HF_HUB_DISABLE_IMPLICIT_TOKEN: '1', HF_TOKEN_PATH: /run/t}\n",
    "hf-token-flag-without-value": B + "extra_args: [--hf-token, --disable-log-stats]\n",
    "api-key-variable-name": B + "api_key_env: MY_VLLM_KEY\n",
    "tab-in-extra-args": B + 'extra_args: ["--foo", "a\\tb"]\n',
    "nesting-at-the-limit": B + "speculative_config: {a: " + "[" * 29 + "1" + "]" * 29 + "}\n",
    "comments-and-quotes": "# a profile\n" + B + "description: 'it''s \"fine\"'  # yes\n",
    "long-description": B + f"description: '{'x' * 100_000}'\n",
}


@pytest.mark.parametrize("text", VALID.values(), ids=list(VALID))
def test_legal_edge_case_is_accepted(
    text: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "p.yaml").write_bytes(text.encode())
    result = runner.invoke(app, ["validate", "p.yaml"])
    assert result.exit_code == 0, result.output
    rendered = runner.invoke(app, ["render", "-p", "./p.yaml", "--format", "json"], env={})
    assert rendered.exit_code == 0, rendered.output


def test_render_never_prints_an_inherited_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_VLLM_KEY", "s3cr3t-Value")
    result = runner.invoke(app, ["render", "-p", "tiny-cpu", "--set", "api_key_env=MY_VLLM_KEY"])
    assert result.exit_code == 0, result.output
    assert "s3cr3t-Value" not in result.output
    assert 'VLLM_API_KEY="$MY_VLLM_KEY"' in result.stdout


# ---------------------------------------------------------------- the YAML safety core, both parsers

LOADERS = [yaml_safety.PyBoundedLoader] + (
    [yaml_safety.BoundedLoader]
    if yaml_safety.BoundedLoader is not yaml_safety.PyBoundedLoader
    else []
)


@pytest.mark.parametrize("loader", LOADERS, ids=lambda c: c.__name__)
@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        (laughs(), 4, "alias *l2 expands the document to more than 5,000 YAML nodes"),
        ("a: &a [1, *a]\n", 1, "alias *a is inside the node it refers to"),
        ("a: " + "[" * 40 + "]" * 40, 1, "YAML nesting deeper than 32 levels"),
        ("a: &a [[[[1]]]]\nb: " + "[" * 28 + "*a" + "]" * 28 + "\n", 2, "YAML nesting deeper"),
        ("[" + "1," * 6000 + "]", 1, "the document has more than 5,000 YAML nodes"),
    ],
)
def test_limits_hold_on_both_parsers(
    loader: type, text: str, line: int, message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(yaml_safety, "BoundedLoader", loader)
    with pytest.raises(yaml_safety.LimitExceeded) as e:
        yaml_safety.parse(text)
    assert (e.value.line, e.value.message[: len(message)]) == (line, message)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (codecs.BOM_UTF8 + b"a: 1\n", None),
        ("a: caf\u00e9\n".encode(), None),
        (codecs.BOM_UTF16_BE + "a: 1".encode("utf-16-be"), "looks like UTF-16 (big-endian) text"),
        (codecs.BOM_UTF32_LE + "a: 1".encode("utf-32-le"), "looks like UTF-32 (little-endian)"),
        ("a: 1\nb: 2\n".encode("utf-16-le"), "looks like UTF-16 (little-endian) text;"),
        ("a: 1\nb: 2\n".encode("utf-32-be"), "looks like UTF-32 (big-endian) text;"),
        (b"a: 1\n\x00\x01\x02", "binary file (NUL bytes, the first at line 2)"),
        (b"a: \xff\xfe\n", "not UTF-8 text: byte 0xff at line 1"),
        (b"a: 1\r\nb: \x1b[2J\n", "control character U+001B is not allowed in a profile"),
        (b"a: 1\n\xef\xbb\xbfb: 2\n", "byte-order mark U+FEFF inside the text"),
        (b"x" * (yaml_safety.MAX_BYTES + 1), "1,048,577 bytes is too large for a profile"),
    ],
)
def test_decode_names_what_the_bytes_look_like(data: bytes, message: str | None) -> None:
    if message is None:
        assert yaml_safety.parse(yaml_safety.decode(data))[1] is not None
        return
    with pytest.raises(yaml_safety.Refused, match=re.escape(message)):
        yaml_safety.parse(yaml_safety.decode(data))


def test_text_with_undecodable_bytes_names_the_byte() -> None:
    # what sys.stdin and os.environ hold for non-UTF-8 bytes (surrogateescape)
    with pytest.raises(yaml_safety.Refused, match="not UTF-8 text: byte 0xe9"):
        yaml_safety.check_text(b"a: caf\xe9\n".decode("utf-8", "surrogateescape"))


def test_builtin_model_names_match_the_generator() -> None:
    from openai_server import tiny
    from openai_server.profile import BUILTIN_MODELS

    assert {tiny.NAME} == BUILTIN_MODELS
