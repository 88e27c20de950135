"""The omni engine on the CPU with a tiny random Qwen3-Omni, served through the real server.

No download: ``devtools.tiny_qwen3_omni`` builds the real architecture (MoE thinker and
talker, code predictor, Code2Wav) at toy sizes into a temporary directory. Its
words are noise, so these tests check what a user of the API would notice
whatever the weights: answers and streams in OpenAI's shape, audio that decodes
to the length the talker's frames make (12.5 frames per second, 1,920 samples
each, less Code2Wav's 555-sample look-ahead at the end; the tiny talker never
ends by itself, so the engine's speech limit sets it), usage, audio ids in
later turns, several conversations at once, and a client that goes away. Two
tests pin the engine to transformers: its step by step thinker, talker and
code predictor compute what ``generate`` computes, and Code2Wav in windows
is Code2Wav in one piece.
"""

from __future__ import annotations

import base64
import math
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the omni engine needs torch (pip install torch)")
transformers = pytest.importorskip("transformers", reason="the omni engine needs transformers")
moe = pytest.importorskip("transformers.integrations.moe")

from devtools.omni_engine import ControlledOmniEngine  # noqa: E402
from devtools.tiny_qwen3_omni import (  # noqa: E402
    CODEBOOK,
    NUM_CODE_GROUPS,
    SPEAKERS,
    build_tiny_qwen3_omni,
)
from omnivox.audio import OUTPUT_SAMPLE_RATE, decode_audio  # noqa: E402
from omnivox.engines.base import (  # noqa: E402
    AudioClip,
    GenerationRequest,
    Turn,
)
from omnivox.engines.events import AudioDelta, Finished, TextDelta  # noqa: E402
from omnivox.engines.omni import loading  # noqa: E402
from omnivox.engines.omni.engine import OmniEngine  # noqa: E402
from omnivox.engines.omni.loading import load_checkpoint  # noqa: E402
from omnivox.engines.omni.scheduler import SpeechLimits  # noqa: E402
from omnivox.settings import Settings  # noqa: E402
from tests.conftest import sdk_client  # noqa: E402
from tests.engine.test_omni import (  # noqa: E402
    INPUT_S,
    MODEL,
    TEXT_TOKENS,
    model_held_once_it_writes,
    omni_settings,
    speak_to_a_tone,
    spoken_question,
    tone,
    wait_until_cancelled,
    wav_samples,
)
from tests.support.live_server import LiveServer, start_server  # noqa: E402

SAMPLES_PER_FRAME = 1920  # 12.5 frames per second at 24 kHz
LOOK_AHEAD_SAMPLES = 555  # Code2Wav's right context, never made at the end
SPEECH_FRAMES = 25  # every answer speaks exactly this many frames (the tiny talker never stops)
SPEECH_SAMPLES = SPEECH_FRAMES * SAMPLES_PER_FRAME - LOOK_AHEAD_SAMPLES
SPEECH_S = SPEECH_SAMPLES / OUTPUT_SAMPLE_RATE  # ~1.98 s
END_TOKEN_IDS = (0, 2)  # <|endoftext|> and <|im_end|> in the tiny tokenizer


@pytest.fixture(scope="module")
def tiny_qwen3(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_qwen3_omni(tmp_path_factory.mktemp("qwen3-omni"))


@pytest.fixture(scope="module")
def server(tiny_qwen3: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    limits = SpeechLimits(base_codes=SPEECH_FRAMES, codes_per_text_token=0)
    engine = ControlledOmniEngine(omni_settings(tiny_qwen3), limits=limits)
    with pytest.MonkeyPatch.context() as patch:
        # float64: a batch sums in another order than one row alone, and the random
        # weights' near-ties must not turn float32 rounding into other greedy words
        patch.setattr(loading, "pick_device", lambda _setting: (torch.device("cpu"), torch.float64))
        patch.setattr(moe, "_can_use_grouped_mm", lambda *_args: False)  # float32-only kernel
        live = start_server(engine, tmp_path_factory.mktemp("omni3-data"))
        yield live
        live.stop()


def ask(server: LiveServer, fmt: str = "wav", **extra: Any) -> Any:
    body: dict[str, Any] = {
        "model": MODEL,
        "modalities": ["text", "audio"],
        "audio": {"voice": "cedar", "format": fmt},
        "messages": [spoken_question()],
        "temperature": 0,
        "seed": 7,
        "max_completion_tokens": TEXT_TOKENS,
        **extra,
    }
    return sdk_client(server.base_url).chat.completions.create(**body)


# -- through the server -------------------------------------------------------------


def test_a_qwen3_omni_checkpoint_loads_with_its_three_speakers(
    tiny_qwen3: Path, tmp_path: Path
) -> None:
    checkpoint = load_checkpoint(str(tiny_qwen3), tmp_path, "cpu")
    assert checkpoint.family == "qwen3"
    assert dict(checkpoint.speaker_ids()) == {name.title(): code for name, code in SPEAKERS.items()}
    assert getattr(checkpoint.model.thinker.model, "visual", None) is None  # never used


def test_a_spoken_question_gets_a_spoken_answer(server: LiveServer) -> None:
    completion = ask(server)
    choice = completion.choices[0]
    assert choice.finish_reason in ("stop", "length")
    assert choice.message.content is None
    audio = choice.message.audio
    assert audio is not None and audio.id.startswith("audio_") and audio.transcript
    assert len(wav_samples(base64.b64decode(audio.data))) == SPEECH_SAMPLES
    usage = completion.usage
    assert usage is not None
    assert usage.prompt_tokens_details.audio_tokens == math.ceil(INPUT_S * 10)
    assert 0 < usage.prompt_tokens_details.text_tokens < 100
    assert usage.completion_tokens_details.audio_tokens == math.ceil(SPEECH_S * 20)
    assert 1 <= usage.completion_tokens_details.text_tokens <= TEXT_TOKENS
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


def test_the_responses_api_answers_a_spoken_question_in_words(server: LiveServer) -> None:
    text, audio = spoken_question()["content"]  # the chat tests' question, as Responses parts
    parts = [{"type": "input_text", "text": text["text"]}, audio]
    response = sdk_client(server.base_url).responses.create(
        model=MODEL,
        input=[{"role": "user", "content": parts}],
        temperature=0,
        max_output_tokens=16,
    )
    assert response.status in ("completed", "incomplete")
    assert response.output and response.output[0].type == "message"
    usage = response.usage
    assert usage is not None and 1 <= usage.output_tokens <= 16
    assert usage.input_tokens > math.ceil(INPUT_S * 10)  # the clip's tokens and the text's


def test_the_stream_carries_the_same_answer_in_chunks(server: LiveServer) -> None:
    one_shot = ask(server, fmt="pcm16").choices[0].message.audio
    assert one_shot is not None
    transcript, pcm, audio_chunks, finishes = "", b"", 0, []
    for chunk in ask(server, fmt="pcm16", stream=True):
        if not chunk.choices:
            continue
        choice = chunk.choices[0]
        if choice.finish_reason is not None:
            finishes.append(choice.finish_reason)
        delta_audio = choice.delta.audio
        if delta_audio is not None:
            transcript += delta_audio.transcript or ""
            if delta_audio.data:
                pcm += base64.b64decode(delta_audio.data)
                audio_chunks += 1
    assert len(finishes) == 1
    assert transcript == one_shot.transcript  # temperature 0
    assert pcm == base64.b64decode(one_shot.data)  # the same seed speaks the same audio
    assert audio_chunks >= 2  # vocoded in chunks, not as one clip at the end


@pytest.mark.parametrize("fmt", ["mp3", "flac", "opus", "aac"])
def test_compressed_output_decodes_to_the_same_length(server: LiveServer, fmt: str) -> None:
    audio = ask(server, fmt=fmt).choices[0].message.audio
    assert audio is not None
    samples = decode_audio(base64.b64decode(audio.data), sample_rate=OUTPUT_SAMPLE_RATE)
    assert abs(len(samples) / OUTPUT_SAMPLE_RATE - SPEECH_S) < 0.08  # codec priming and padding


def test_an_earlier_spoken_answer_is_heard_again_by_its_id(server: LiveServer) -> None:
    first = ask(server).choices[0].message.audio
    assert first is not None
    second = ask(
        server,
        messages=[
            spoken_question(),
            {"role": "assistant", "audio": {"id": first.id}},
            {"role": "user", "content": "and again?"},
        ],
    )
    assert second.choices[0].message.audio is not None
    details = second.usage.prompt_tokens_details
    assert details.audio_tokens == math.ceil(INPUT_S * 10) + math.ceil(SPEECH_S * 20)


def test_text_only_answers_have_content_and_no_audio(server: LiveServer) -> None:
    completion = sdk_client(server.base_url).chat.completions.create(
        model=MODEL, messages=[spoken_question()], max_completion_tokens=4, temperature=0
    )
    choice = completion.choices[0]
    assert choice.message.audio is None and choice.message.content
    assert completion.usage is not None and completion.usage.completion_tokens <= 4


def test_concurrent_conversations_share_the_model_and_answer_as_alone(server: LiveServer) -> None:
    engine: OmniEngine = server.engine
    questions = ["hello there", "what is the capital of France?", "cats sleep a lot"]

    def one(question: str) -> tuple[str, np.ndarray]:
        audio = ask(server, messages=[spoken_question(question)]).choices[0].message.audio
        return audio.transcript, wav_samples(base64.b64decode(audio.data)).astype(np.int32)

    alone = [one(q) for q in questions]
    results: dict[int, tuple[str, np.ndarray]] = {}
    threads = [
        threading.Thread(target=lambda i=i, q=q: results.__setitem__(i, one(q)))
        for i, q in enumerate(questions)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    for i, (transcript, samples) in enumerate(alone):
        assert results[i][0] == transcript  # the same words
        # the same speech codes: a batched Code2Wav call rounds a sample 1 LSB apart at most
        assert len(results[i][1]) == len(samples)
        assert np.abs(results[i][1] - samples).max() <= 1
    assert engine.scheduler.peak_thinker_rows >= 2  # decoded in one batch, not one by one
    assert engine.scheduler.peak_talker_rows >= 2


def test_a_client_that_goes_away_frees_its_conversation(
    server: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine: OmniEngine = server.engine
    cancelled = engine.cancelled_conversations
    body = {
        "model": MODEL,
        "stream": True,
        "modalities": ["text", "audio"],
        "audio": {"voice": "nova", "format": "pcm16"},
        "messages": [spoken_question()],
        "max_completion_tokens": 4000,
        "temperature": 0,
        "logit_bias": {str(token): -100 for token in END_TOKEN_IDS},  # write until cancelled
    }
    with (
        model_held_once_it_writes(engine, monkeypatch) as release,
        httpx.stream("POST", server.base_url + "/chat/completions", json=body, timeout=60) as r,
    ):
        for line in r.iter_lines():
            if '"transcript"' in line:
                break
        assert engine.active_conversations == 1
        r.close()  # the client leaves while the model is held: it can not have finished
        wait_until_cancelled(engine)
        release.set()
    deadline = time.monotonic() + 5.0
    while engine.active_conversations and time.monotonic() < deadline:
        time.sleep(0.02)
    assert engine.active_conversations == 0
    assert engine.cancelled_conversations == cancelled + 1
    assert ask(server).choices[0].message.audio is not None  # and the model serves the next one


async def test_speech_leaves_in_chunks_of_whole_frames_while_text_leads(server: LiveServer) -> None:
    engine: OmniEngine = server.engine
    plan = engine.frame_plan
    events = await speak_to_a_tone(engine, "shimmer", seed=3)
    chunks = [len(e.pcm_s16le) // 2 for e in events if isinstance(e, AudioDelta)]
    # 25 frames: the first alone (as early as Code2Wav allows), then 2, 4 and 8 (doubling
    # up to 12), then the 10 left at the end; the clip ends 555 samples short
    assert (plan.first_frames, plan.frames) == (1, 12)
    assert chunks == [
        SAMPLES_PER_FRAME - LOOK_AHEAD_SAMPLES,
        2 * SAMPLES_PER_FRAME,
        4 * SAMPLES_PER_FRAME,
        8 * SAMPLES_PER_FRAME,
        10 * SAMPLES_PER_FRAME,
    ]
    assert isinstance(events[-1], Finished)
    first_audio = next(i for i, e in enumerate(events) if isinstance(e, AudioDelta))
    assert any(isinstance(e, TextDelta) for e in events[:first_audio])  # text leads


# -- the prompt -------------------------------------------------------------------


def test_the_prompt_has_no_default_system_turn_and_one_audio_block_per_clip(
    tiny_qwen3: Path,
) -> None:
    from transformers.models.qwen3_omni_moe.modeling_qwen3_omni_moe import (
        _get_feat_extract_output_lengths,
    )

    from omnivox.engines.omni.encoding import PromptEncoder, qwen3_audio
    from omnivox.engines.omni.prompt import build_prompt

    tokenizer = transformers.AutoTokenizer.from_pretrained(tiny_qwen3)
    extractor = transformers.WhisperFeatureExtractor.from_pretrained(tiny_qwen3)
    encoder = PromptEncoder(tokenizer, extractor, qwen3_audio(50))
    long_clip = AudioClip(tone(34.5), 16_000, "long")  # more than one 30 s window
    request = GenerationRequest((Turn("user", (long_clip, "and?")),))
    encoded = encoder.encode(build_prompt(request, None))
    text = tokenizer.decode(list(encoded.input_ids))
    assert text.startswith("<|im_start|>user\n<|audio_start|><|audio_pad|>")
    assert text.count("<|audio_start|>") == 1  # no cut at 30 s: the encoder windows itself
    assert text.endswith("<|audio_end|>and?<|im_end|>\n<|im_start|>assistant\n")
    expected = int(_get_feat_extract_output_lengths(torch.tensor(3450)))
    assert encoded.audio_tokens == expected == text.count("<|audio_pad|>")
    with_system = build_prompt(GenerationRequest((Turn("system", ("Be brief.",)),)), None)
    assert tokenizer.decode(list(encoder.encode(with_system).input_ids)).startswith(
        "<|im_start|>system\nBe brief.<|im_end|>\n"
    )


# -- against transformers -----------------------------------------------------------


def _load(folder: Path) -> Any:
    from transformers.models.qwen3_omni_moe import modeling_qwen3_omni_moe as modeling

    torch.set_num_threads(1)
    return modeling.Qwen3OmniMoeForConditionalGeneration.from_pretrained(
        folder, dtype=torch.float32
    ).eval()


def test_thinker_talker_and_code_predictor_steps_compute_what_generate_computes(
    tiny_qwen3: Path,
) -> None:
    from omnivox.engines.omni.encoding import PromptEncoder, qwen3_audio
    from omnivox.engines.omni.prompt import build_prompt
    from omnivox.engines.omni.qwen3_networks import Qwen3Networks

    model = _load(tiny_qwen3)
    encoder = PromptEncoder(
        transformers.AutoTokenizer.from_pretrained(tiny_qwen3),
        transformers.WhisperFeatureExtractor.from_pretrained(tiny_qwen3),
        qwen3_audio(50),
    )
    request = GenerationRequest(
        (
            Turn("system", ("Be brief.",)),
            Turn("user", (AudioClip(tone(2.0), 16_000, "question"), "hi")),
            Turn("assistant", ("Hello.",)),
            Turn("user", ("and the capital of France?",)),
        )
    )
    prompt = encoder.encode(build_prompt(request, None))
    n_text, n_frames = 6, 12
    ids = torch.tensor([prompt.input_ids])
    seen: list[Any] = []
    decode = model.code2wav.chunked_decode

    def spy(codes: Any, *args: Any, **kwargs: Any) -> Any:
        seen.append(codes)
        return decode(codes, *args, **kwargs)

    model.code2wav.chunked_decode = spy
    with torch.inference_mode():
        sequences, waveform = model.generate(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            input_features=prompt.input_features,
            feature_attention_mask=prompt.feature_attention_mask,
            speaker="Aiden",
            thinker_max_new_tokens=n_text,
            thinker_min_new_tokens=n_text,
            thinker_do_sample=False,
            thinker_eos_token_id=model.config.im_end_token_id,
            talker_max_new_tokens=n_frames + 1,  # N first codes make N - 1 frames
            talker_do_sample=False,
        )
        networks = Qwen3Networks(model, torch.device("cpu"), torch.float32)
        tokens, frames = _greedy_steps(networks, prompt, n_text, n_frames, SPEAKERS["aiden"])
    assert tokens == sequences[0, ids.shape[1] :].tolist()
    (codes,) = seen
    assert codes.shape == (1, NUM_CODE_GROUPS, n_frames)
    assert frames == codes[0].transpose(0, 1).tolist()
    assert waveform.shape[-1] == n_frames * SAMPLES_PER_FRAME - LOOK_AHEAD_SAMPLES


def _greedy_steps(
    networks: Any, prompt: Any, n_text: int, n_frames: int, speaker: int
) -> tuple[list[int], list[list[int]]]:
    """Greedy text (no end), then greedy frames with generate's repetition penalty."""
    end_ids = list(END_TOKEN_IDS)

    def next_token(logits: Any) -> int:
        logits = logits.clone()
        logits[end_ids] = float("-inf")
        return int(logits.argmax())

    prefill = networks.prefill_thinker(prompt, for_talker=True)
    batch = networks.new_thinker_batch()
    batch.add(1, prefill.cache, prefill.length)
    tokens, parts = [next_token(prefill.logits)], []
    while len(tokens) < n_text:
        logits, part = networks.thinker_step(batch, torch.tensor([tokens[-1]]))
        parts.append(part[0])
        tokens.append(next_token(logits[0]))
    reply = [*parts, networks.text_eos_part, networks.text_pad_part]  # the last token is not fed
    said: set[int] = set()

    def first_code(logits: Any) -> Any:
        logits = logits.float().masked_fill(~networks.allowed_codes, float("-inf"))
        for code in said:
            logits[code] = logits[code] / 1.05 if logits[code] > 0 else logits[code] * 1.05
        code = int(logits.argmax())
        said.add(code)
        return torch.tensor([code])

    started = networks.prefill_talker(prefill.talker_context, speaker, reply[0])
    talker = networks.new_talker_batch()
    talker.add(1, started.cache, started.length)
    frames = networks.complete_frames(started.hidden[None], first_code(started.logits), None)
    out = [frames[0].tolist()]
    while len(out) < n_frames:
        part = reply[min(len(out), len(reply) - 1)]
        logits, hidden = networks.talker_step(talker, frames, part[None])
        frames = networks.complete_frames(hidden, first_code(logits[0]), None)
        out.append(frames[0].tolist())
    return tokens, out


def test_code2wav_in_windows_is_code2wav_in_one_piece(tiny_qwen3: Path) -> None:
    from omnivox.engines.omni.qwen3_code2wav import Code2Wave, FramePlan, FrameStream

    model = _load(tiny_qwen3)
    c2w = Code2Wave(model.code2wav, torch.device("cpu"))
    assert (c2w.samples_per_frame, c2w.look_ahead) == (SAMPLES_PER_FRAME, LOOK_AHEAD_SAMPLES)
    rng = np.random.default_rng(2)
    frames = rng.integers(0, CODEBOOK, size=(20, NUM_CODE_GROUPS)).tolist()
    with torch.inference_mode():
        whole = model.code2wav(torch.tensor([frames]).transpose(1, 2)).reshape(-1).numpy()
        plan = FramePlan(first_frames=3, frames=5, context_frames=25)
        assert [plan.chunk_frames(i) for i in range(4)] == [3, 5, 5, 5]
        stream = FrameStream(c2w, plan)
        pieces = []
        for frame in frames:  # the talker adds frames one by one
            stream.add(frame)
            while (job := stream.job()) is not None:
                pieces.append(stream.take(job, c2w.decode([job.frames])[0]))
        stream.finish()
        while (job := stream.job()) is not None:
            pieces.append(stream.take(job, c2w.decode([job.frames])[0]))
        # two windows of different lengths in one call, right-padded: each as alone
        short, long = frames[:7], frames[3:20]
        batched = c2w.decode([short, long])
        alone = [c2w.decode([short])[0], c2w.decode([long])[0]]
    assert stream.done
    assert [len(p) for p in pieces] == [
        3 * SAMPLES_PER_FRAME - LOOK_AHEAD_SAMPLES,
        *[5 * SAMPLES_PER_FRAME] * 3,
        2 * SAMPLES_PER_FRAME,
    ]
    np.testing.assert_allclose(np.concatenate(pieces), whole, atol=1e-5)  # within the context
    for got, expected in zip(batched, alone, strict=True):
        np.testing.assert_allclose(got, expected, atol=1e-5)


def test_each_chunk_is_its_windows_new_samples_when_the_context_is_short(
    tiny_qwen3: Path,
) -> None:
    from omnivox.engines.omni.qwen3_code2wav import Code2Wave, FramePlan, FrameStream

    model = _load(tiny_qwen3)
    c2w = Code2Wave(model.code2wav, torch.device("cpu"))
    frames = np.random.default_rng(3).integers(0, CODEBOOK, size=(17, NUM_CODE_GROUPS)).tolist()
    stream = FrameStream(c2w, FramePlan(first_frames=2, frames=4, context_frames=3))
    for frame in frames:
        stream.add(frame)
    stream.finish()
    sent_frames, total = 0, 0
    with torch.inference_mode():
        while (job := stream.job()) is not None:
            start, end = job.start, job.end
            assert start == max(0, sent_frames - 3) and job.frames == frames[start:end]
            window = model.code2wav(torch.tensor([frames[start:end]]).transpose(1, 2))
            window = window.reshape(-1).numpy()
            piece = stream.take(job, c2w.decode([job.frames])[0])
            # the window's samples from the last chunk's end on, in the clip's time
            first = sent_frames * SAMPLES_PER_FRAME - LOOK_AHEAD_SAMPLES if sent_frames else 0
            np.testing.assert_allclose(
                piece, window[first - start * SAMPLES_PER_FRAME :], atol=1e-5
            )
            total += len(piece)
            sent_frames = end
    assert stream.done and sent_frames == 17  # chunks of 2, 4, 4, 4 and the 3 left
    assert total == 17 * SAMPLES_PER_FRAME - LOOK_AHEAD_SAMPLES


# -- on a GPU -----------------------------------------------------------------------


@pytest.mark.gpu
async def test_the_tiny_qwen3_omni_speaks_on_cuda_the_same_with_and_without_graphs(
    tiny_qwen3: Path,
) -> None:
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    limits = SpeechLimits(base_codes=SPEECH_FRAMES, codes_per_text_token=0)
    answers: dict[bool, bytes] = {}
    for graphs in (False, True):
        settings = Settings(engine="omni", model=str(tiny_qwen3), device="cuda", cuda_graphs=graphs)
        engine = ControlledOmniEngine(settings, limits=limits)
        await engine.start()
        try:
            events = await speak_to_a_tone(engine, "nova", seed=1)
            pcm = b"".join(e.pcm_s16le for e in events if isinstance(e, AudioDelta))
            assert any(isinstance(e, TextDelta) for e in events)
            assert isinstance(events[-1], Finished)
            assert len(pcm) // 2 == SPEECH_SAMPLES
            answers[graphs] = pcm
            predictor = engine.scheduler.networks.residual_codes  # type: ignore[attr-defined]
            # one frame per talker step, all of one shape: captured once, then replayed
            assert predictor.replays >= (SPEECH_FRAMES - 3 if graphs else 0)
            assert predictor.captures == (1 if graphs else 0)
        finally:
            await engine.close()
    assert answers[True] == answers[False]
