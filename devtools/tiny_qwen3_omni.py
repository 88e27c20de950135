"""A tiny, randomly initialised Qwen3-Omni (``qwen3_omni_moe``), built and saved locally.

``build_tiny_qwen3_omni(folder)`` writes a model directory shaped like a hub
snapshot of Qwen/Qwen3-Omni-30B-A3B-Instruct: ``config.json`` + safetensors for
the same architecture (thinker with MoE text layers, audio and vision towers;
talker with MoE layers and its code predictor; Code2Wav) at toy sizes (~370 k
parameters), a byte-level BPE tokenizer with Qwen3-Omni's special tokens, and
Whisper's feature extractor with 128 mel bins.

Kept real: 16 code groups per frame and Code2Wav's upsampling (1,920 samples per
12.5 Hz frame at 24 kHz); the codec and speaker ids keep the real checkpoint's
offsets from one another. Needed by transformers though its config classes do
not declare them: ``talker_config.spatial_merge_size``, the talker text config's
``shared_expert_intermediate_size`` and ``thinker_config.vision_start_token_id``.
The talker's vocabulary is the codebook + 1,024 (``generate`` suppresses the top
1,024 ids and can not handle an answer of no frames); its special codes are
made improbable so speech runs to the requested length; Code2Wav's weights are
drawn wide enough (``initializer_range`` 0.12) to make an audible, unclipped
waveform.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from devtools.tiny_qwen2_5_omni import save_feature_extractor, save_tokenizer

SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|audio_start|>",
    "<|audio_end|>",
    "<|audio_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<tts_pad>",
    "<tts_text_bos>",
    "<tts_text_eod>",
)
# Role words: must each be ONE token (the model reads the token after <|im_start|> as the role).
# They are added as (non-special) added tokens so that BPE cannot split them.
ROLE_TOKENS = ("system", "user", "assistant")
CORPUS = (
    "You are Qwen, a virtual human developed by the Qwen Team, Alibaba Group, capable of "
    "perceiving auditory and visual inputs, as well as generating text and speech.",
    "system user assistant hello there what is the capital of France? Paris is lovely.",
    "The quick brown fox jumps over the lazy dog. Numbers 0 1 2 3 4 5 6 7 8 9.",
    "Please say three short sentences about cats. Cats sleep a lot and purr softly.",
)
VOCAB_SIZE = 384  # thinker vocabulary; the tokenizer's ids all fit below it
TEXT_HIDDEN = (
    64  # thinker hidden = audio output_dim = vision out_hidden_size = talker thinker_hidden_size
)
TALKER_HIDDEN = 32  # talker hidden = code predictor hidden
CODEBOOK = 32  # codes 0..31 (code predictor vocab = code2wav codebook_size)
NUM_CODE_GROUPS = 16  # talker + predictor code groups = code2wav num_quantizers (real value)
# HF generate() suppresses talker ids [vocab-1024, vocab) except codec_eos, so the talker
# vocab must be >= CODEBOOK + 1024 or no code can ever be sampled (it emits EOS at once).
TALKER_VOCAB = CODEBOOK + 1024
# Codec specials and speakers in [CODEBOOK, TALKER_VOCAB): the same offsets from one
# another as in the checkpoint.
CODEC = {
    "codec_pad_id": CODEBOOK + 100,  # ckpt 2148
    "codec_bos_id": CODEBOOK + 101,  # ckpt 2149
    "codec_eos_token_id": CODEBOOK + 102,  # ckpt 2150
    "codec_nothink_id": CODEBOOK + 107,  # ckpt 2155
    "codec_think_bos_id": CODEBOOK + 108,  # ckpt 2156
    "codec_think_eos_id": CODEBOOK + 109,  # ckpt 2157
}
SPEAKERS = {
    "chelsie": CODEBOOK + 253,
    "ethan": CODEBOOK + 254,
    "aiden": CODEBOOK + 255,
}  # ckpt 2301..2303


def build_tiny_qwen3_omni(folder: Path, *, seed: int = 0) -> Path:
    import torch
    from transformers import Qwen3OmniMoeConfig, Qwen3OmniMoeForConditionalGeneration

    ids = save_tokenizer_and_extractor(folder)
    config = Qwen3OmniMoeConfig(**config_dict(ids))
    torch.manual_seed(seed)
    model = Qwen3OmniMoeForConditionalGeneration(config)
    initialise_experts(model, config.talker_config.text_config.initializer_range)
    discourage_end_of_speech(model)
    model.save_pretrained(folder)
    return folder


def save_tokenizer_and_extractor(folder: Path) -> dict[str, int]:
    """Write the tokenizer and the feature extractor; the ids of the special and role tokens."""
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = save_tokenizer(
        folder, SPECIAL_TOKENS, CORPUS, VOCAB_SIZE - 16, whole_words=ROLE_TOKENS
    )
    assert len(tokenizer) <= VOCAB_SIZE, len(tokenizer)
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS + ROLE_TOKENS}
    for role in ROLE_TOKENS:  # sanity: one token each
        assert tokenizer.encode(role, add_special_tokens=False) == [ids[role]], role
    assert len(tokenizer.encode("\n", add_special_tokens=False)) == 1
    save_feature_extractor(folder)
    return ids


def config_dict(ids: dict[str, int]) -> dict[str, Any]:
    text = {
        "vocab_size": VOCAB_SIZE,
        "hidden_size": TEXT_HIDDEN,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 16,
        "num_experts": 4,
        "num_experts_per_tok": 2,
        "moe_intermediate_size": 32,
        "norm_topk_prob": True,
        "decoder_sparse_step": 1,
        "mlp_only_layers": [],
        "tie_word_embeddings": False,
        "max_position_embeddings": 4096,
        # mrope_section sums to head_dim/2
        "rope_parameters": {
            "rope_type": "default",
            "rope_theta": 1e6,
            "mrope_section": [4, 2, 2],
            "interleaved": True,
        },
    }
    thinker = {
        "audio_config": {
            "num_mel_bins": 128,
            "d_model": 32,
            "encoder_layers": 1,
            "encoder_attention_heads": 2,
            "encoder_ffn_dim": 64,
            "downsample_hidden_size": 8,
            "output_dim": TEXT_HIDDEN,
            "n_window": 50,
            "n_window_infer": 800,
            "conv_chunksize": 500,
            "max_source_positions": 1500,
        },
        # Always built (thinker.model.visual); defaults are 27 x 1152, so shrink.
        "vision_config": {
            "depth": 1,
            "hidden_size": 16,
            "intermediate_size": 32,
            "num_heads": 2,
            "out_hidden_size": TEXT_HIDDEN,
            "patch_size": 16,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "num_position_embeddings": 16,
            "deepstack_visual_indexes": [0],
        },
        "text_config": text,
        "audio_token_id": ids["<|audio_pad|>"],
        "image_token_id": ids["<|image_pad|>"],
        "video_token_id": ids["<|video_pad|>"],
        "audio_start_token_id": ids["<|audio_start|>"],
        "audio_end_token_id": ids["<|audio_end|>"],  # undeclared, kept like the ckpt
        "vision_start_token_id": ids["<|vision_start|>"],  # undeclared but read by get_rope_index
        "vision_end_token_id": ids["<|vision_end|>"],
        "user_token_id": ids["user"],
        "position_id_per_seconds": 13,
    }
    talker = {
        "text_config": {
            "vocab_size": TALKER_VOCAB,
            "hidden_size": TALKER_HIDDEN,
            "intermediate_size": 64,  # width of text/hidden_projection ResizeMLP
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "head_dim": 8,
            "num_experts": 4,
            "num_experts_per_tok": 2,
            "moe_intermediate_size": 16,
            "shared_expert_intermediate_size": 32,  # undeclared but required (shared expert)
            "norm_topk_prob": True,
            "max_position_embeddings": 4096,
            "rope_parameters": {
                "rope_type": "default",
                "rope_theta": 1e6,
                "mrope_section": [2, 1, 1],
                "interleaved": True,
            },
        },
        "code_predictor_config": {
            "vocab_size": CODEBOOK,
            "hidden_size": TALKER_HIDDEN,
            "intermediate_size": 64,
            "num_hidden_layers": 1,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "head_dim": 8,
            "num_code_groups": NUM_CODE_GROUPS,
            "max_position_embeddings": 64,
            "rope_parameters": {"rope_type": "default", "rope_theta": 1e6},
        },
        "num_code_groups": NUM_CODE_GROUPS,
        "thinker_hidden_size": TEXT_HIDDEN,
        "accept_hidden_layer": 1,  # <= thinker num_hidden_layers
        "spatial_merge_size": 2,  # undeclared but read in Talker __init__
        **CODEC,
        "speaker_id": dict(SPEAKERS),
        "audio_token_id": ids["<|audio_pad|>"],
        "image_token_id": ids["<|image_pad|>"],
        "video_token_id": ids["<|video_pad|>"],
        "vision_start_token_id": ids["<|vision_start|>"],
        "audio_start_token_id": ids["<|audio_start|>"],
        "position_id_per_seconds": 13,
    }
    code2wav = {
        "codebook_size": CODEBOOK,
        "num_quantizers": NUM_CODE_GROUPS,
        "hidden_size": 16,
        "intermediate_size": 32,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "num_key_value_heads": 2,
        "sliding_window": 72,
        "decoder_dim": 32,  # divisible by 2**len(upsample_rates)
        "upsample_rates": [8, 5, 4, 3],  # real: 1920 samples per frame at 24 kHz
        "upsampling_ratios": [2, 2],
        "max_position_embeddings": 8000,
        "rope_parameters": {"rope_type": "default", "rope_theta": 1e4},
        # At the default 0.02 the random vocoder outputs ~1e-8 (silence). 0.12 gives std
        # ~0.05, peak ~0.4, no clipping; 0.14+ starts clipping at +-1, 0.2 is a square wave.
        "initializer_range": 0.12,
    }
    return {
        "thinker_config": thinker,
        "talker_config": talker,
        "code2wav_config": code2wav,
        "enable_audio_output": True,
        "im_start_token_id": ids["<|im_start|>"],
        "im_end_token_id": ids["<|im_end|>"],
        "tts_pad_token_id": ids["<tts_pad>"],
        "tts_bos_token_id": ids["<tts_text_bos>"],
        "tts_eos_token_id": ids["<tts_text_eod>"],
        "system_token_id": ids["system"],
        "user_token_id": ids["user"],
        "assistant_token_id": ids["assistant"],
    }


def initialise_experts(model: Any, std: float) -> None:
    """transformers (5.23) leaves the talker's fused expert weights as ``torch.empty``
    (whatever was in memory: sometimes huge, sometimes NaN): draw them like the rest."""
    import torch

    with torch.no_grad():
        for module in model.modules():
            if type(module).__name__.endswith("TextExperts"):
                for param in module.parameters():
                    param.normal_(0.0, std)
        for name, param in model.named_parameters():
            assert bool(torch.isfinite(param).all()) and float(param.abs().max()) < 100, name


def discourage_end_of_speech(model: Any) -> None:
    """Random weights would emit codec_eos after a few frames: make codes 0..CODEBOOK-1
    confident and the specials' logit 0, so speech runs until talker_max_new_tokens."""
    import torch

    head = model.talker.codec_head.weight
    with torch.no_grad():
        head.mul_(40.0)
        head[CODEBOOK:].zero_()
