"""Models: the built-in tiny base models, a character-level tokenizer, and random tiny models for tests.

``tiny-arith`` is a 4-layer ``LlamaForCausalLM`` (hidden 128, 659,584 parameters, 2.6 MB of fp32 safetensors)
shipped inside the package (``grpolab/models/tiny_arith/``) and pre-trained from scratch on CPU by
``scripts/pretrain_tiny.py`` on the train split of the ``arith`` task, with a fixed fraction of deliberately wrong
answers, so it is right only some of the time when sampled at temperature 1 while the right answer is the mode
of its distribution: a base model that GRPO-style RL can visibly improve in minutes on a CPU. See
``docs/tiny_model.md`` and the ``pretrain_report.json`` in the model folder for its measured accuracy.

Two more built-in models read ``TEXT_CHARS`` (letters and punctuation): ``tiny-tools``, warm-started on tool-use
transcripts of the ``search`` task by ``scripts/warmstart_tools.py`` (``docs/tools.md``), and ``tiny-clinical``,
warm-started on worked cases of the ``clinical`` task by ``scripts/warmstart_clinical.py`` (``docs/clinical.md``);
each folder holds its ``warmstart_report.json``.

``transformers`` and ``tokenizers`` are imported lazily, inside the functions, so importing this module needs
neither. Nothing here downloads anything: ``load_pretrained`` takes a built-in name or a local folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerBase

#: Built-in models by name: the folder ``from_pretrained`` loads.
_HERE = Path(__file__).resolve().parent
BUILTIN_MODELS: dict[str, str] = {
    "tiny-arith": str(_HERE / "tiny_arith"),
    "tiny-tools": str(_HERE / "tiny_tools"),
    "tiny-clinical": str(_HERE / "tiny_clinical"),
}
#: The script that regenerates each built-in model's files.
BUILTIN_SCRIPTS: dict[str, str] = {
    "tiny-arith": "scripts/pretrain_tiny.py",
    "tiny-tools": "scripts/warmstart_tools.py",
    "tiny-clinical": "scripts/warmstart_clinical.py",
}
#: Prefix that may precede a built-in name (``"builtin:tiny-arith"``).
BUILTIN_PREFIX = "builtin:"

#: Special tokens of the character tokenizer, with ids 0..3 in this order.
PAD_TOKEN, BOS_TOKEN, EOS_TOKEN, UNK_TOKEN = "<pad>", "<bos>", "<eos>", "<unk>"
SPECIAL_TOKENS = (PAD_TOKEN, BOS_TOKEN, EOS_TOKEN, UNK_TOKEN)
#: The single characters of the character tokenizer (ids 4.. in this order); any other character maps to ``<unk>``.
CHARS = "0123456789+-*/=()., "
#: A text alphabet for built-in models that read and write words (tool calls, case vignettes): lower- and
#: upper-case letters, digits and common punctuation, plus a newline. Pass it as ``char_tokenizer(chars=TEXT_CHARS)``.
TEXT_CHARS = CHARS + "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ<>[]{}:;'\"?!_#%&|~@$^\n"


def char_tokenizer(*, model_max_length: int = 64, chars: str = CHARS) -> PreTrainedTokenizerBase:
    """The character-level tokenizer of the built-in models: one token per character, BOS added, left padding.

    Built with the ``tokenizers`` library (a ``WordLevel`` model over single characters, a ``Split`` pre-tokenizer
    that isolates every character, a ``Fuse`` decoder that joins tokens without spaces, and a ``TemplateProcessing``
    post-processor that puts ``<bos>`` first) and wrapped as a transformers fast tokenizer, so ``save_pretrained``
    writes files ``AutoTokenizer.from_pretrained`` reads back. Ids: ``<pad>`` 0, ``<bos>`` 1, ``<eos>`` 2,
    ``<unk>`` 3, then ``CHARS`` (digits, ``+ - * / = ( ) . ,`` and space). Padding is on the left, for batched
    generation.

    - ``model_max_length``: longest sequence the model takes; default 64 (the tiny models' position limit).
    - ``chars``: the single characters of the vocabulary (ids 4.. in this order); default ``CHARS`` (digits and
      arithmetic signs, the ``tiny-arith`` model's); ``TEXT_CHARS`` adds letters and punctuation. No duplicates.

    >>> tok = char_tokenizer()
    >>> tok("23+45=").input_ids
    [1, 6, 7, 14, 8, 9, 18]
    >>> tok.decode([1, 6, 8, 2, 0], skip_special_tokens=True)
    '24'
    """
    from tokenizers import Regex, Tokenizer, decoders, pre_tokenizers, processors
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    if len(set(chars)) != len(chars):
        repeated = sorted({c for c in chars if chars.count(c) > 1})
        raise ValueError(f"char_tokenizer: chars has repeated characters: {repeated}")
    vocab = {token: i for i, token in enumerate([*SPECIAL_TOKENS, *chars])}
    backend = Tokenizer(WordLevel(vocab=vocab, unk_token=UNK_TOKEN))
    backend.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")  # every character is a token
    backend.decoder = decoders.Fuse()  # join tokens with no separator, so decode(encode(s)) == s
    backend.post_processor = processors.TemplateProcessing(
        single=f"{BOS_TOKEN} $A", pair=f"{BOS_TOKEN} $A $B", special_tokens=[(BOS_TOKEN, vocab[BOS_TOKEN])]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token=PAD_TOKEN,
        bos_token=BOS_TOKEN,
        eos_token=EOS_TOKEN,
        unk_token=UNK_TOKEN,
        padding_side="left",
        clean_up_tokenization_spaces=False,  # the default clean-up would delete spaces before "." and ","
        model_max_length=model_max_length,
    )


def tiny_llama_config(
    tokenizer: PreTrainedTokenizerBase,
    *,
    hidden: int = 128,
    layers: int = 4,
    heads: int = 4,
    intermediate: int | None = None,
    max_positions: int = 64,
) -> LlamaConfig:
    """A small ``LlamaConfig`` over ``tokenizer``'s vocabulary, with its pad/bos/eos ids and tied embeddings.

    - ``hidden``: model width; default 128 (``tiny-arith``), usually 64 to 256.
    - ``layers``: decoder layers; default 4 (``tiny-arith``), usually 2 to 6.
    - ``heads``: attention heads (``head_dim = hidden // heads``); default 4.
    - ``intermediate``: MLP width; default ``2 * hidden``.
    - ``max_positions``: position limit; default 64.
    """
    from transformers import LlamaConfig

    if hidden % heads:
        raise ValueError(f"hidden ({hidden}) must be a multiple of heads ({heads})")
    return LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=intermediate or 2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        head_dim=hidden // heads,
        max_position_embeddings=max_positions,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )


def set_special_token_ids(model: LlamaForCausalLM, tokenizer: PreTrainedTokenizerBase) -> None:
    """Put ``tokenizer``'s pad/bos/eos ids into ``model.config`` and ``model.generation_config`` (in place)."""
    for cfg in (model.config, model.generation_config):
        cfg.pad_token_id = tokenizer.pad_token_id
        cfg.bos_token_id = tokenizer.bos_token_id
        cfg.eos_token_id = tokenizer.eos_token_id


def resolve_model_path(name_or_path: str) -> str:
    """The local folder of a built-in name (``"tiny-arith"``, ``"builtin:tiny-arith"``) or of a local path.

    Raises ``ValueError`` for anything else: grpolab never downloads from a model hub.
    """
    name = name_or_path.removeprefix(BUILTIN_PREFIX)
    if name in BUILTIN_MODELS:
        folder = Path(BUILTIN_MODELS[name])
        if not (folder / "config.json").is_file():
            raise ValueError(
                f"built-in model {name!r} has no files in {folder}; regenerate them with "
                f"`python {BUILTIN_SCRIPTS[name]}` (or reinstall grpolab with its package data)"
            )
        return str(folder)
    if name_or_path.startswith(BUILTIN_PREFIX):
        raise ValueError(f"unknown built-in model {name!r}; known: {', '.join(sorted(BUILTIN_MODELS))}")
    if Path(name_or_path).expanduser().is_dir():
        return str(Path(name_or_path).expanduser())
    raise ValueError(
        f"{name_or_path!r} is neither a built-in model ({', '.join(sorted(BUILTIN_MODELS))}) nor a local folder; "
        "grpolab loads models only from local folders (save_pretrained output), it does not download from a hub"
    )


def load_pretrained(
    name_or_path: str, *, dtype: torch.dtype = torch.float32, **kwargs: Any
) -> tuple[LlamaForCausalLM, PreTrainedTokenizerBase]:
    """Load ``(model, tokenizer)`` from a built-in name (``"tiny-arith"``, ``"builtin:tiny-arith"``) or a local folder.

    - ``dtype``: parameter dtype; default ``torch.float32`` (the shipped weights' dtype).
    - ``kwargs``: passed on to ``AutoModelForCausalLM.from_pretrained``.

    The model comes back in eval mode (as ``from_pretrained`` leaves it). Raises ``ValueError`` for a name that is
    neither built in nor a local folder.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = resolve_model_path(name_or_path)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype, **kwargs)
    return model, tokenizer


def random_tiny_model(
    seed: int = 0, hidden: int = 64, layers: int = 2, *, heads: int = 4, chars: str = CHARS, max_positions: int = 64
) -> tuple[LlamaForCausalLM, PreTrainedTokenizerBase]:
    """A randomly initialised small ``LlamaForCausalLM`` with the built-in character tokenizer; no files.

    For fast tests of trainers. The global torch RNG is left untouched (the weights come from a forked RNG
    seeded with ``seed``), so the same ``seed`` gives the same weights.

    - ``seed``: initialisation seed; default 0.
    - ``hidden``: model width; default 64, usually 32 to 128.
    - ``layers``: decoder layers; default 2.
    - ``heads``: attention heads; default 4.
    - ``chars``: the tokenizer's characters (``char_tokenizer``); default ``CHARS``, ``TEXT_CHARS`` for text tasks.
    - ``max_positions``: the position limit (and the tokenizer's ``model_max_length``); default 64.

    >>> model, tok = random_tiny_model()
    >>> model.config.vocab_size == len(tok), model.config.num_hidden_layers
    (True, 2)
    """
    from transformers import LlamaForCausalLM

    tokenizer = char_tokenizer(model_max_length=max_positions, chars=chars)
    config = tiny_llama_config(tokenizer, hidden=hidden, layers=layers, heads=heads, max_positions=max_positions)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    set_special_token_ids(model, tokenizer)
    return model, tokenizer


__all__ = [
    "BUILTIN_MODELS",
    "BUILTIN_SCRIPTS",
    "CHARS",
    "SPECIAL_TOKENS",
    "TEXT_CHARS",
    "char_tokenizer",
    "load_pretrained",
    "random_tiny_model",
    "resolve_model_path",
    "set_special_token_ids",
    "tiny_llama_config",
]
