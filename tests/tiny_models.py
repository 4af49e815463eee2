"""Tiny random causal language models for tests: built on disk in a second, never downloaded.

``build_tiny_model(folder)`` writes a 2-layer Llama-style model with a byte-level BPE tokenizer
(a few hundred tokens, trained here on a few sentences) and a chat template, in the layout
``AutoModelForCausalLM`` / ``AutoTokenizer.from_pretrained`` read. ``build_lora_adapter`` saves
a peft LoRA adapter for it whose weights are random (not the zero-initialised B of a fresh
adapter), so attaching it changes what the model generates. ``build_tiny_cross_encoder`` writes
a 2-layer BERT relevance scorer (one logit) with a word-piece tokenizer that
``sentence_transformers.CrossEncoder`` loads. The weights are random: tests check mechanics,
never content.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from transformers import BertTokenizer, PreTrainedTokenizerFast

SPECIAL_TOKENS = ("<|pad|>", "<|end|>", "<|system|>", "<|user|>", "<|assistant|>")
CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}<|end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
_SENTENCES = (
    "To restore a backup, stop the server and run the restore command with the archive name.",
    "The team edition costs twenty euros per seat and month.",
    "Answer from the numbered passages and cite them as [1] or [2].",
    "Widgetron paints widgets in teal by default; set WIDGET_COLOR to change it.",
)
LORA_TARGETS = ("q_proj", "v_proj")


def build_tokenizer(vocab_size: int = 384) -> PreTrainedTokenizerFast:
    """A byte-level BPE fast tokenizer (any text encodes; decoding gives it back) with a chat
    template; ``<|end|>`` is its end-of-sequence token and ``<|pad|>`` its padding."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(list(_SENTENCES) * 4, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        eos_token="<|end|>",
        pad_token="<|pad|>",
        additional_special_tokens=list(SPECIAL_TOKENS[2:]),
        # without this generate() fails on the token_type_ids a bare fast tokenizer returns
        model_input_names=["input_ids", "attention_mask"],
        chat_template=CHAT_TEMPLATE,
    )


def build_tiny_model(folder: Path, seed: int = 0, hidden_size: int = 64) -> Path:
    """Write a random 2-layer Llama with the tiny tokenizer into ``folder``; returns it."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = build_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 2,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=8192,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=None,
    )
    torch.manual_seed(seed)
    folder.mkdir(parents=True, exist_ok=True)
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def build_lora_adapter(model_folder: Path, folder: Path, seed: int = 1, rank: int = 4) -> Path:
    """Save a LoRA adapter for the model in ``model_folder`` with random, non-zero weights
    (peft's ``init_lora_weights=False``), scaled up so greedy output visibly changes."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    base = AutoModelForCausalLM.from_pretrained(model_folder, dtype=torch.float32)
    lora = LoraConfig(
        r=rank,
        lora_alpha=rank * 8,
        target_modules=list(LORA_TARGETS),
        init_lora_weights=False,
        task_type="CAUSAL_LM",
    )
    get_peft_model(base, lora).save_pretrained(folder)
    return folder


BERT_SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
_CHARACTERS = "abcdefghijklmnopqrstuvwxyz0123456789"


def build_wordpiece_tokenizer() -> BertTokenizer:
    """A BERT word-piece tokenizer over the words of the tiny corpus, plus every letter and
    digit as a word start and a ``##`` continuation, so any ASCII text encodes without
    ``[UNK]`` while the corpus's own words stay whole tokens."""
    import re

    from transformers import BertTokenizer

    words = sorted({w for s in _SENTENCES for w in re.findall(r"[a-z0-9]+", s.lower())})
    pieces = [*BERT_SPECIAL_TOKENS, *_CHARACTERS, *(f"##{c}" for c in _CHARACTERS), *".,;:!?'-"]
    tokens = list(dict.fromkeys([*pieces, *words]))
    return BertTokenizer(vocab={token: i for i, token in enumerate(tokens)})


def build_tiny_cross_encoder(folder: Path, seed: int = 0, hidden_size: int = 32) -> Path:
    """Write a random 2-layer BERT sequence classifier with one label (a relevance logit) and
    the word-piece tokenizer into ``folder``, loadable by ``CrossEncoder(folder)``; returns it.

    The weights are drawn wider than BERT's usual init (std 0.02) so that different pairs get
    clearly different scores instead of near-ties around zero."""
    from transformers import BertForSequenceClassification

    return _save_tiny_bert(
        BertForSequenceClassification,
        folder,
        seed,
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 2,
        num_attention_heads=2,
        max_position_embeddings=512,
        num_labels=1,
        initializer_range=0.2,
    )


def build_tiny_bert(folder: Path, seed: int = 0) -> Path:
    """A random 2-layer BERT encoder (4 heads of 8) with the word-piece tokenizer: a plain
    transformers folder, which the ONNX embedder reads as mean pooling."""
    from transformers import BertModel

    return _save_tiny_bert(
        BertModel,
        folder,
        seed,
        hidden_size=32,
        intermediate_size=64,
        num_attention_heads=4,
        max_position_embeddings=128,
    )


def tiny_bert_embedder(folder: Path) -> dict[str, str]:
    """An ``embedder:`` section for a random tiny BERT built in ``folder``, its queries on the
    same (torch) model: no ONNX export."""
    model = build_tiny_bert(folder)
    return {"type": "sentence_transformers", "model": str(model), "query_backend": "documents"}


def _save_tiny_bert(model_class: Any, folder: Path, seed: int, **config: Any) -> Path:
    """A random 2-layer ``model_class`` of the BERT family with ``config`` and the word-piece
    tokenizer, saved into ``folder``."""
    import torch
    from transformers import BertConfig

    tokenizer = build_wordpiece_tokenizer()
    bert = BertConfig(
        vocab_size=len(tokenizer),
        num_hidden_layers=2,
        pad_token_id=tokenizer.pad_token_id,
        **config,
    )
    torch.manual_seed(seed)
    folder.mkdir(parents=True, exist_ok=True)
    model_class(bert).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
