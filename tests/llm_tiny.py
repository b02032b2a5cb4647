"""A tiny, randomly initialised chat model built in the test process (no weights on disk)."""

from __future__ import annotations

from pathlib import Path

CHATML = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

CORPUS = [
    "Hello there, how are you today?",
    "The moon landing was in 1969. People walked on the moon!",
    "I lost my card yesterday, please block it.",
    "Tell me a joke about cats and dogs.",
    "Привет! Как дела? Я потерял карту.",
    '{"intent": "none", "slots": {}} 0123456789',
] * 20


def tiny_tokenizer(chat_template: bool = True):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<pad>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tokenizer.train_from_iterator(CORPUS, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token="<|im_end|>", pad_token="<pad>")
    if chat_template:
        fast.chat_template = CHATML
    return fast


def tiny_backend(
    tmp_path: Path,
    *,
    chat_template: bool = True,
    seed: int = 0,
    context_window: int | None = None,
    tokenizer=None,
    max_positions: int = 512,
    **options,
):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from rejoinder.llm.backends.torch import TorchBackend
    from rejoinder.llm.models import ModelRef

    tokenizer = tokenizer or tiny_tokenizer(chat_template)
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=max_positions,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = LlamaForCausalLM(config)
    return TorchBackend(
        ModelRef("tiny", tmp_path, "hf"), model=model, tokenizer=tokenizer, context_window=context_window, **options
    )


def tiny_model_dir(path: Path, *, chat_template: bool = True, seed: int = 0) -> Path:
    """A tiny random causal LM saved as a Hugging Face model folder (what training steps start from)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = tiny_tokenizer(chat_template)
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    LlamaForCausalLM(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path
