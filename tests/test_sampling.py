"""The KV-cache sampling loop: the current transformers cache API (no deprecation warning) and exact agreement with
recomputing every step from scratch."""

import warnings

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

from morbench.sampling import sample

VOCAB, PAD, EOS = 24, 0, 1


def _tiny(kind: str) -> torch.nn.Module:
    torch.manual_seed(0)
    if kind == "llama":
        config = LlamaConfig(
            vocab_size=VOCAB,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=64,
            pad_token_id=PAD,
            eos_token_id=EOS,
        )
        return LlamaForCausalLM(config).eval()
    config = GPT2Config(vocab_size=VOCAB, n_embd=32, n_layer=2, n_head=4, n_positions=64, pad_token_id=PAD)
    return GPT2LMHeadModel(config).eval()


def _prompts() -> tuple[torch.Tensor, torch.Tensor]:
    """Three left-padded prompts of lengths 3, 1 and 2."""
    ids = torch.tensor([[5, 6, 7], [PAD, PAD, 8], [PAD, 9, 10]])
    return ids, ids != PAD


@pytest.mark.parametrize("kind", ["llama", "gpt2"])
def test_sampling_uses_the_current_cache_api_without_deprecation_warnings(kind):
    model = _tiny(kind)
    ids, mask = _prompts()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # transformers' "`past_key_values` is deprecated" FutureWarning would raise
        generation = sample(
            model, ids, mask, 8, eos_token_id=EOS, pad_token_id=PAD, generator=torch.Generator().manual_seed(0)
        )
    assert generation.tokens.shape[0] == 3 and generation.num_tokens > 0
    from morbench.sampling import new_kv_cache

    argument, cache = new_kv_cache(model)
    assert argument in ("cache", "past_key_values") and cache.get_seq_length() == 0


@pytest.mark.parametrize("kind", ["llama", "gpt2"])
def test_cached_sampling_matches_recomputing_each_step_without_a_cache(kind):
    """The cache changes nothing but speed: each step's distribution equals a full forward pass over the prefix."""
    model = _tiny(kind)
    ids, mask = _prompts()
    generation = sample(
        model,
        ids,
        mask,
        8,
        eos_token_id=EOS,
        pad_token_id=PAD,
        temperature=0.8,
        generator=torch.Generator().manual_seed(3),
        forbid_token_ids=[PAD],
    )
    with torch.inference_mode():
        for t in range(generation.tokens.shape[1]):
            full_ids = torch.cat([ids, generation.tokens[:, :t]], dim=1)
            full_mask = torch.cat([mask, generation.mask[:, :t]], dim=1)
            positions = (full_mask.long().cumsum(dim=1) - 1).clamp(min=0)
            logits = model(input_ids=full_ids, attention_mask=full_mask.long(), position_ids=positions).logits
            logits = logits[:, -1, :].float() / 0.8
            logits[:, PAD] = float("-inf")
            expected = torch.log_softmax(logits, dim=-1).gather(1, generation.tokens[:, t : t + 1]).squeeze(1)
            live = generation.mask[:, t]
            torch.testing.assert_close(generation.logprobs[live, t], expected[live], rtol=0, atol=1e-5)
