"""Qwen3-Omni: a tiny random checkpoint the tests build, and what omnivox does with it.

The omni engine streams Qwen2.5-Omni; a Qwen3-Omni checkpoint is refused at start
with a message that says so. The tiny model is kept speaking through
transformers' own ``generate`` (thinker, talker, code predictor, Code2Wav), the
reference a streaming path for it has to match.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the omni engine needs torch (pip install torch)")
transformers = pytest.importorskip("transformers", reason="the omni engine needs transformers")

from omnivox.engines.omni.loading import load_checkpoint  # noqa: E402
from omnivox.errors import ModelUnavailableError  # noqa: E402
from tests.engine.omni3_tiny import CODEBOOK, NUM_CODE_GROUPS, build_tiny_qwen3_omni  # noqa: E402

SAMPLES_PER_FRAME = 1920  # 12.5 code frames per second at 24 kHz
LOOK_AHEAD_SAMPLES = 555  # Code2Wav's right context, cut from the end
THINKER_TOKENS = 8
TALKER_FRAMES = 20


@pytest.fixture(scope="module")
def tiny_qwen3(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_qwen3_omni(tmp_path_factory.mktemp("qwen3-omni"))


def test_a_qwen3_omni_checkpoint_is_refused_at_start_with_a_clear_message(
    tiny_qwen3: Path, tmp_path: Path
) -> None:
    with pytest.raises(ModelUnavailableError) as err:
        load_checkpoint(str(tiny_qwen3), tmp_path, "cpu")
    message = str(err.value)
    assert "Qwen3-Omni checkpoint (qwen3_omni_moe)" in message
    assert "Qwen/Qwen2.5-Omni-3B or -7B" in message


def test_the_tiny_qwen3_omni_speaks_through_transformers_generate(tiny_qwen3: Path) -> None:
    from transformers.models.qwen3_omni_moe import modeling_qwen3_omni_moe as modeling

    tokenizer = transformers.AutoTokenizer.from_pretrained(tiny_qwen3)
    extractor = transformers.WhisperFeatureExtractor.from_pretrained(tiny_qwen3)
    model = modeling.Qwen3OmniMoeForConditionalGeneration.from_pretrained(
        tiny_qwen3, dtype=torch.float32
    ).eval()
    config = model.config
    wave = np.random.default_rng(0).standard_normal(32_000).astype(np.float32) * 0.1  # 2 s
    features = extractor(
        wave,
        sampling_rate=16_000,
        padding="longest",
        truncation=False,
        return_attention_mask=True,
        return_tensors="pt",
    )
    n_frames = int(features["attention_mask"].sum())
    n_audio = int(modeling._get_feat_extract_output_lengths(torch.tensor(n_frames)))
    prompt = (
        "<|im_start|>user\n<|audio_start|>" + "<|audio_pad|>" * n_audio + "<|audio_end|>"
        "what is the capital of France?<|im_end|>\n<|im_start|>assistant\n"
    )
    encoded = tokenizer(prompt, return_tensors="pt")
    codes_seen = []
    decode = model.code2wav.chunked_decode

    def recording_decode(codes: torch.Tensor, *args: object, **kwargs: object) -> torch.Tensor:
        codes_seen.append(codes)
        return decode(codes, *args, **kwargs)

    model.code2wav.chunked_decode = recording_decode
    torch.manual_seed(0)
    with torch.no_grad():
        text_ids, waveform = model.generate(
            input_ids=encoded["input_ids"],
            attention_mask=encoded["attention_mask"],
            input_features=features["input_features"],
            feature_attention_mask=features["attention_mask"],
            speaker="Chelsie",
            return_audio=True,
            thinker_max_new_tokens=THINKER_TOKENS,
            thinker_min_new_tokens=THINKER_TOKENS,
            thinker_do_sample=False,
            thinker_eos_token_id=config.im_end_token_id,
            talker_max_new_tokens=TALKER_FRAMES,
            talker_do_sample=False,
        )
    assert text_ids.shape[1] == encoded["input_ids"].shape[1] + THINKER_TOKENS
    (codes,) = codes_seen
    assert codes.shape[:2] == (1, NUM_CODE_GROUPS) and codes.shape[2] >= TALKER_FRAMES - 1
    assert int(codes.min()) >= 0 and int(codes.max()) < CODEBOOK
    n_samples = codes.shape[2] * SAMPLES_PER_FRAME - LOOK_AHEAD_SAMPLES
    assert waveform.shape[-1] == n_samples
    assert 0.01 < float(waveform.abs().max()) < 1.0  # audible, not clipped
    with torch.no_grad():  # Code2Wav in chunks with left context = in one piece
        whole = model.code2wav(codes)
    assert torch.allclose(waveform.reshape(-1), whole.reshape(-1), atol=1e-5)
