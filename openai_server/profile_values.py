"""What one profile value may be: strings that reach vLLM's argv, hosts, names, built-ins,
secrets. Pure: validators and annotated types that profile.py's fields use.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Any

from pydantic import AfterValidator
from pydantic_core import PydanticCustomError

BUILTIN_MODEL_PREFIX = "builtin:"
# The models serve generates itself (tiny/), by name: here, so that the profile can refuse an
# unknown one without importing the generator (render maps each name to its directory).
BUILTIN_MODELS = frozenset({"tiny-phi3"})
# LoRA adapters serve generates for them (tiny/adapter.py), by name, as `builtin:NAME`.
BUILTIN_ADAPTERS = frozenset({"tiny-phi3-lora"})
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def names_a_path(ref: str) -> bool:
    """Whether a model or adapter reference is written as a filesystem path, not a Hugging Face
    repo id (which a bare name such as "gpt2" is too)."""
    return ref.startswith(("/", ".", "~"))


# ---------------------------------------------------------------- strings that reach vLLM
#
# Every string of a profile ends up in vLLM's argv or environment (or in `serve`'s one-line
# output), so characters no process argument should hold are refused where they are written:
# NUL (execve cannot pass it: the launch would die with a traceback), the other C0 and C1 control
# characters and DEL (terminal escapes that rewrite what `serve render` shows; a newline that breaks
# a one-line command) and lone surrogates (a "\ud800" escape: not encodable for execve or a
# terminal). Tab is allowed everywhere: it is harmless to argv, environment and terminal, and comes
# with pasted text. Newline is allowed only in multi-line text: `description` and `chat_template`
# (an inline Jinja template).

# Errors of these types never repeat the value: it may be a secret, or unprintable.
UNECHOED_ERRORS = frozenset({"control_character", "secret_in_profile", "not_for_vllm"})
_CONTROL = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\ud800-\udfff]")
_CONTROL_MULTILINE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]")


def _control_error(text: str, found: re.Match[str], where: str = "") -> PydanticCustomError:
    allowed = "tab and newline" if found.re is _CONTROL_MULTILINE else "tab"
    code = ord(found.group())
    kind = "unpaired surrogate" if 0xD800 <= code <= 0xDFFF else "control character"
    return PydanticCustomError(
        "control_character",
        "{kind} {char} at position {pos}{where}; vLLM cannot take it (printable characters and "
        "{allowed} are allowed)",
        {"kind": kind, "char": f"U+{code:04X}", "pos": found.start(), "where": where,
         "allowed": allowed},
    )  # fmt: skip


def _printable(v: str) -> str:
    if found := _CONTROL.search(v):
        raise _control_error(v, found)
    return v


def _printable_lines(v: str) -> str:
    if found := _CONTROL_MULTILINE.search(v):
        raise _control_error(v, found)
    return v


def not_an_option(v: str) -> str:
    # rendered as `--flag VALUE`: argparse reads a value that starts with '-' as an option
    if v.startswith("-"):
        raise ValueError("starts with '-', so vLLM's parser would read it as an option")
    return v


# A string rendered into argv or the environment; one rendered as the value of a vLLM flag; text.
Arg = Annotated[str, AfterValidator(_printable)]
FlagValue = Annotated[str, AfterValidator(_printable), AfterValidator(not_an_option)]
Text = Annotated[str, AfterValidator(_printable_lines)]

# RFC 1123 host name label: letters, digits and '-', not at either end, at most 63 characters.
_HOST_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")


def valid_host(v: str) -> str:
    """An IP address (v4, v6, v6 with a %scope) or an RFC 1123 host name: what uvicorn can bind.
    A name whose last label is all digits is a malformed IPv4 address (RFC 1123 section 2.1)."""
    try:
        ipaddress.ip_address(v)
        return v
    except ValueError:
        pass
    labels = v.removesuffix(".").split(".")
    if len(v) <= 253 and all(_HOST_LABEL.fullmatch(x) for x in labels) and not labels[-1].isdigit():
        return v
    hint = " (no brackets around an IPv6 address)" if v.startswith("[") else ""
    raise ValueError(
        f"not an IP address or a host name{hint}; use an address such as 127.0.0.1, 0.0.0.0 or "
        "::1, or a name of letters, digits, '-' and '.' (RFC 1123)"
    )


# An address vLLM's processes on other nodes connect to (rendered as a flag's value).
HostValue = Annotated[FlagValue, AfterValidator(valid_host)]
# A Linux interface name (IFNAMSIZ: at most 15 characters, no '/', ':' or whitespace), as
# NCCL_SOCKET_IFNAME and GLOO_SOCKET_IFNAME take one.
_INTERFACE = re.compile(r"^[A-Za-z0-9_.-]{1,15}$")
# The environment network_interface renders (NCCL's and Gloo's socket interface, vLLM docs:
# "Distributed inference and serving", troubleshooting).
NETWORK_INTERFACE_VARS = ("NCCL_SOCKET_IFNAME", "GLOO_SOCKET_IFNAME")


def valid_interface(v: str) -> str:
    if not _INTERFACE.fullmatch(v):
        raise ValueError("not a network interface name; use one like eth0 or ens5 (at most 15 "
                         "letters, digits, '_', '.', '-')")  # fmt: skip
    return v


# What clients send as the `model` field of a request and vLLM uses as a URL path segment in some
# routes: no whitespace (a name with a leading or trailing space matches no request), nothing a URL
# path must escape, '/' only inside (Hugging Face ids are org/name).
MAX_SERVED_MODEL_NAME = 256
_URL_UNSAFE = set('"#%<>?\\^`{|}')


def _served_name(v: str) -> str:
    if not v:
        raise ValueError("empty; leave served_model_name out to serve the model under its own name")
    if len(v) > MAX_SERVED_MODEL_NAME:
        raise PydanticCustomError(
            "not_for_vllm",
            "{n} characters; at most {most}",
            {"n": len(v), "most": MAX_SERVED_MODEL_NAME},
        )
    bad = next((ch for ch in v if ch.isspace() or ch in _URL_UNSAFE), None)
    if bad is not None:
        raise ValueError(
            f"{bad!r} cannot be in a model name that clients send; use letters, digits and "
            '- . _ : / @ + (no whitespace, none of " # % < > ? \\ ^ ` { | })'
        )
    if v.startswith("/") or v.endswith("/"):
        raise ValueError("cannot start or end with '/'; a name like org/model is allowed")
    return v


ServedName = Annotated[FlagValue, AfterValidator(_served_name)]


def _adapter_known(v: str) -> str:
    name = v.removeprefix(BUILTIN_MODEL_PREFIX)
    if v.startswith(BUILTIN_MODEL_PREFIX) and name not in BUILTIN_ADAPTERS:
        known = ", ".join(BUILTIN_MODEL_PREFIX + name for name in sorted(BUILTIN_ADAPTERS))
        raise ValueError(f"unknown built-in adapter; built-in: {known}")
    return v


AdapterSource = Annotated[FlagValue, AfterValidator(_adapter_known)]


def builtin_known(v: str) -> str:
    if v.startswith(BUILTIN_MODEL_PREFIX) and v[len(BUILTIN_MODEL_PREFIX) :] not in BUILTIN_MODELS:
        known = ", ".join(BUILTIN_MODEL_PREFIX + name for name in sorted(BUILTIN_MODELS))
        raise ValueError(f"unknown built-in model; built-in: {known}")
    return v


# ---------------------------------------------------------------- secrets
#
# A profile is checked into a repository and printed by `serve render`: a secret written in it is
# leaked. Names that hold one (VLLM_API_KEY, HF_TOKEN, HUGGING_FACE_HUB_TOKEN, OPENAI_API_KEY,
# AWS_SECRET_ACCESS_KEY, ...) may not be given a value under `env:` (an empty value, which unsets
# an inherited one, is not a secret); the fix is to leave the variable in the launcher's
# environment, which the server inherits, or for the API key to name it with api_key_env.
_SECRET_NAME = re.compile(
    r"(?:^|_)(?:TOKEN|API_?KEY|SECRET|SECRET_KEY|SECRET_ACCESS_KEY|PASSWORD)$"
)
_NOT_SECRETS = frozenset({"HF_HUB_DISABLE_IMPLICIT_TOKEN"})  # a switch named like a secret
# A Hugging Face access token, under whatever name: hf_ and 34 letters and digits.
HF_TOKEN_VALUE = re.compile(r"\bhf_[A-Za-z0-9]{30,}")
# vLLM flags whose value is a secret (argparse also accepts a unique prefix, like --api-k)
_SECRET_FLAGS = {"--api-key": "api_key_env", "--hf-token": "HF_TOKEN"}


def is_secret_name(name: str) -> bool:
    upper = name.upper()
    return upper not in _NOT_SECRETS and _SECRET_NAME.search(upper) is not None


def secret_error(fix: str, key: str | None = None, what: str = "") -> PydanticCustomError:
    """`key`: the env variable (the error's key path ends with it); `what`: said first."""
    return PydanticCustomError(
        "secret_in_profile",
        "{what}a secret must not be written in a profile (it would be committed with the file "
        "and printed by `serve render`); {fix}",
        {"what": what, "fix": fix, **({"key": key} if key else {})},
    )


def secret_flag(arg: str) -> str | None:
    name = arg.split("=", 1)[0]
    if len(name) < 6:  # "--api", "--hf" are prefixes of other flags too
        return None
    return next((flag for flag in _SECRET_FLAGS if flag.startswith(name)), None)


def check_json(value: Any, path: str) -> None:
    """A JSON flag value (--speculative-config): printable strings, 64-bit integers."""
    if isinstance(value, str):
        if found := _CONTROL.search(value):
            raise _control_error(value, found, f" in {path or 'the value'}")
    elif isinstance(value, bool | float) or value is None:
        return
    elif isinstance(value, int):
        if not -(2**63) <= value < 2**63:
            raise PydanticCustomError(
                "not_for_vllm", "{path}: an integer beyond 64 bits", {"path": path or "value"}
            )
    elif isinstance(value, dict):
        for key, item in value.items():
            check_json(key, f"{path}.{key}".lstrip(".") if isinstance(key, str) else path)
            check_json(item, f"{path}.{key}".lstrip("."))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            check_json(item, f"{path}[{i}]")
    else:  # dates, sets, bytes from YAML tags: json.dumps cannot write them
        raise PydanticCustomError(
            "not_for_vllm",
            "{path}: a {kind} is not JSON; use strings, numbers, booleans, lists and mappings",
            {"path": path or "value", "kind": type(value).__name__},
        )
