"""A tiny, randomly initialised Qwen2.5-Omni, built and saved locally: no download.

``build_tiny_omni(folder)`` writes a model directory that loads exactly like a
hub snapshot of Qwen/Qwen2.5-Omni-3B/-7B: ``config.json`` + safetensors weights
for the same architecture (thinker with its audio and vision towers, talker,
token2wav DiT + BigVGAN) at toy sizes, a byte-level BPE tokenizer trained here
on a few sentences with Qwen's special tokens, Whisper's feature extractor
settings (128 mel bins at 16 kHz, as the real model), and ``spk_dict.pt`` with
the two speakers the real model ships ("Chelsie", "Ethan").

What is kept real because the engine depends on it: the special-token layout,
the DiT's block size and its look-back/look-ahead layers (streaming vocoding
windows), the code rate (2 mel frames per code) and the vocoder's hop of 240
samples at 24 kHz. Everything else is shrunk so that the whole model has a few
hundred thousand parameters and runs on two busy CPU cores.

The talker's special codes (end of speech among them) are made (nearly) impossible
to sample, so
that speech lasts until the engine's own length cap and tests get audio of a
predictable size; random weights would otherwise stop after a handful of codes.
"""

from __future__ import annotations

import json
from pathlib import Path

SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|AUDIO|>",
    "<|audio_bos|>",
    "<|audio_eos|>",
    "<|IMAGE|>",
    "<|VIDEO|>",
    "<|vision_bos|>",
    "<|vision_eos|>",
    "<tts_pad>",
    "<tts_text_bos>",
    "<tts_text_eod>",
    "<tts_text_bos_single>",
)
CORPUS = (
    "You are Qwen, a virtual human developed by the Qwen Team, Alibaba Group, capable of "
    "perceiving auditory and visual inputs, as well as generating text and speech.",
    "system user assistant hello there what is the capital of France? Paris is lovely.",
    "The quick brown fox jumps over the lazy dog. Numbers 0 1 2 3 4 5 6 7 8 9.",
    "Please say three short sentences about cats. Cats sleep a lot and purr softly.",
)
VOCAB_SIZE = 384  # the thinker's vocabulary: the BPE's tokens fit below it
N_CODES = 48  # speech codes the DiT knows; the talker's specials follow them
SPEAKERS = ("Chelsie", "Ethan")
TEXT_HIDDEN = 64


def build_tiny_omni(folder: Path, *, seed: int = 0) -> Path:
    """Write the tiny model into ``folder`` (created) and return it."""
    import torch
    from transformers import Qwen2_5OmniConfig, Qwen2_5OmniForConditionalGeneration

    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = save_tokenizer(folder)
    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in SPECIAL_TOKENS}
    save_feature_extractor(folder)
    config = Qwen2_5OmniConfig(**_config_dict(ids))
    torch.manual_seed(seed)
    model = Qwen2_5OmniForConditionalGeneration(config)
    _discourage_end_of_speech(model)
    model.save_pretrained(folder)
    speakers = {
        name: {
            "bos_token": ids["<tts_text_bos_single>"],
            "cond": torch.randn(16),
            "ref_mel": torch.randn(1, 120, 80),
        }
        for name in SPEAKERS
    }
    torch.save(speakers, folder / "spk_dict.pt")
    return folder


def save_tokenizer(
    folder: Path,
    special_tokens: tuple[str, ...] = SPECIAL_TOKENS,
    corpus: tuple[str, ...] = CORPUS,
    trained_vocab_size: int = VOCAB_SIZE - 8,
    whole_words: tuple[str, ...] = (),
):  # -> PreTrainedTokenizerFast
    """A byte-level BPE trained on ``corpus``; ``whole_words`` are added as single tokens."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=trained_vocab_size,
        special_tokens=list(special_tokens),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(corpus, trainer)
    if whole_words:  # not special, so decode() keeps them
        bpe.add_tokens([AddedToken(w, normalized=False, special=False) for w in whole_words])
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=list(special_tokens[1:]),
    )
    tokenizer.save_pretrained(folder)
    return tokenizer


def save_feature_extractor(folder: Path) -> None:
    from transformers import WhisperFeatureExtractor

    extractor = WhisperFeatureExtractor(
        feature_size=128, sampling_rate=16_000, hop_length=160, chunk_length=30, n_fft=400
    )
    extractor.save_pretrained(folder)


def _config_dict(ids: dict[str, int]) -> dict[str, object]:
    text = {
        "vocab_size": VOCAB_SIZE,
        "hidden_size": TEXT_HIDDEN,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "rope_parameters": {"rope_type": "default", "rope_theta": 1e6, "mrope_section": [2, 3, 3]},
        "tie_word_embeddings": False,
    }
    thinker = {
        "audio_config": {
            "num_mel_bins": 128,
            "encoder_layers": 1,
            "encoder_attention_heads": 2,
            "encoder_ffn_dim": 64,
            "d_model": 32,
            "output_dim": TEXT_HIDDEN,
            "n_window": 100,
            "max_source_positions": 1500,
        },
        "vision_config": {
            "depth": 1,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_heads": 2,
            "out_hidden_size": TEXT_HIDDEN,
            "fullatt_block_indexes": [0],
        },
        "text_config": text,
        "audio_token_index": ids["<|AUDIO|>"],
        "image_token_index": ids["<|IMAGE|>"],
        "video_token_index": ids["<|VIDEO|>"],
        "audio_start_token_id": ids["<|audio_bos|>"],
        "audio_end_token_id": ids["<|audio_eos|>"],
        "vision_start_token_id": ids["<|vision_bos|>"],
        "vision_end_token_id": ids["<|vision_eos|>"],
    }
    talker = {
        "vocab_size": N_CODES + 8,
        "tts_codec_pad_token_id": N_CODES,
        "tts_codec_start_token_id": N_CODES + 1,
        "tts_codec_end_token_id": N_CODES + 2,
        "tts_codec_mask_token_id": N_CODES + 4,
        "tts_text_start_token_id": ids["<tts_text_bos>"],
        "tts_text_end_token_id": ids["<tts_text_eod>"],
        "tts_text_pad_token_id": ids["<tts_pad>"],
        "audio_token_index": ids["<|AUDIO|>"],
        "image_token_index": ids["<|IMAGE|>"],
        "video_token_index": ids["<|VIDEO|>"],
        "audio_start_token_id": ids["<|audio_bos|>"],
        "audio_end_token_id": ids["<|audio_eos|>"],
        "vision_start_token_id": ids["<|vision_bos|>"],
        "vision_end_token_id": ids["<|vision_eos|>"],
        "embedding_size": TEXT_HIDDEN,
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 8,
        "rope_parameters": {"rope_type": "default", "rope_theta": 1e6, "mrope_section": [1, 1, 2]},
    }
    token2wav = {
        "dit_config": {
            "hidden_size": 32,
            "num_hidden_layers": 4,
            "num_attention_heads": 2,
            "head_dim": 16,
            "ff_mult": 2,
            "emb_dim": 16,
            "block_size": 24,
            "look_ahead_layers": [2],
            "look_backward_layers": [0, 3],
            "repeats": 2,
            "num_embeds": N_CODES,
            "mel_dim": 80,
            "enc_emb_dim": 16,
            "enc_dim": 16,
            "enc_channels": [16, 16, 16, 16, 48],
            "enc_attention_channels": 8,
            "enc_res2net_scale": 2,
            "enc_se_channels": 8,
        },
        "bigvgan_config": {
            "mel_dim": 80,
            "upsample_initial_channel": 64,
            "upsample_rates": [5, 3, 2, 2, 2, 2],
            "upsample_kernel_sizes": [11, 7, 4, 4, 4, 4],
        },
    }
    return {
        "thinker_config": thinker,
        "talker_config": talker,
        "token2wav_config": token2wav,
        "enable_audio_output": True,
    }


def _discourage_end_of_speech(model) -> None:  # model: Qwen2_5OmniForConditionalGeneration
    import torch

    talker = model.talker
    head = talker.codec_head.weight
    with torch.no_grad():
        head.mul_(40.0)  # confident random codes ...
        head[N_CODES:].zero_()  # ... against which the specials' logit of 0 never wins


def describe(folder: Path) -> dict[str, object]:
    """A few facts about a built model, for test messages."""
    config = json.loads((folder / "config.json").read_text())
    return {
        "model_type": config.get("model_type"),
        "files": sorted(p.name for p in folder.iterdir()),
    }
