"""The thinker and the talker of Qwen2.5-Omni, one step at a time.

transformers' ``Qwen2_5OmniForConditionalGeneration.generate`` runs the
thinker to its end, then the talker to its end, then token2wav on the whole
clip: nothing leaves before everything is done, and module-level state
(``rope_deltas``) ties it to one batch. This module calls the same sub-modules
step by step instead, computing what ``generate`` computes:

- thinker prefill: token embeddings with the audio encoder's output scattered
  over the ``<|AUDIO|>`` positions, one pass through the language model. For
  the talker it keeps, per prompt position, last hidden state + input
  embedding (audio positions' embeddings zeroed, as ``generate`` does);
- thinker step (batched): feed each row's last token; its logits give the next
  token, and last hidden state + the token's embedding is the "reply part" the
  talker reads for that token;
- talker prefill: [prompt context, the speaker's text-bos embedding, reply part
  0], with the codec pad and bos embeddings added to the last two positions,
  projected into the talker; its last logits give speech code 0;
- talker step (batched): code embedding + the row's next reply part. After
  the thinker's last fed token the reply stream is the text-eos embedding, then
  the text-pad embedding for ever.

Positions are sequential (``RaggedBatch``). A Qwen2.5-Omni talker step makes
one code, a "frame" of one codebook; ``OmniNetworks`` is the interface the
scheduler drives, which ``qwen3_networks.Qwen3Networks`` also implements
(frames of 16 codebooks there). This module knows nothing of conversations,
sampling or audio.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from omnivox.engines.omni.batch import RaggedBatch
from omnivox.engines.omni.encoding import EncodedPrompt
from omnivox.engines.omni.sampling import QWEN2_5_TALKER, CodeSampler, CodeSampling


@dataclass(frozen=True, slots=True)
class ThinkerPrefill:
    cache: Any
    length: int
    logits: Any  # [vocab]
    talker_context: Any  # [1, length, hidden] or None


@dataclass(frozen=True, slots=True)
class TalkerPrefill:
    cache: Any
    length: int
    logits: Any  # [vocab] of the first frame's first code
    hidden: Any  # [hidden] the talker's last state (what Qwen3's code predictor reads), or None


class OmniNetworks(Protocol):
    """What the scheduler needs of a family's thinker and talker."""

    device: Any
    allowed_codes: Any  # bool [vocab]: codes a talker may say (speech and its end)
    speech_codes_only: Any  # bool [vocab]: the same without the end (forced lengths)
    codec_end_ids: tuple[int, ...]
    text_eos_part: Any
    text_pad_part: Any
    code_sampling: CodeSampling

    def new_thinker_batch(self) -> RaggedBatch: ...
    def new_talker_batch(self) -> RaggedBatch: ...
    def initially_seen(self) -> Any: ...
    def prefill_thinker(self, prompt: EncodedPrompt, *, for_talker: bool) -> ThinkerPrefill: ...
    def thinker_step(self, batch: RaggedBatch, tokens: Any) -> tuple[Any, Any]: ...
    def prefill_talker(self, context: Any, speaker: int, first_part: Any) -> TalkerPrefill: ...
    def talker_step(self, batch: RaggedBatch, frames: Any, parts: Any) -> tuple[Any, Any]: ...
    def complete_frames(
        self, hidden: Any, first_codes: Any, samplers: Sequence[CodeSampler]
    ) -> Any: ...


class Networks:
    """Qwen2.5-Omni's thinker and talker (frames of one code)."""

    code_sampling = QWEN2_5_TALKER

    def __init__(self, model: Any, device: Any, dtype: Any) -> None:
        import torch

        self.model = model
        self.device = device
        self.dtype = dtype
        thinker, talker = model.thinker, model.talker
        self.thinker = thinker
        self.talker = talker
        # transformers >= 5.23 wraps the text model and the towers in ``thinker.model``;
        # before, ``thinker.model`` was the text model and the towers hung off the thinker.
        self.language_model = getattr(thinker.model, "language_model", thinker.model)
        self.audio_tower = getattr(thinker.model, "audio_tower", None) or thinker.audio_tower
        self.embed_text = thinker.get_input_embeddings()
        self.embed_code = talker.get_input_embeddings()
        self.audio_token_id = int(model.config.thinker_config.audio_token_index)
        self.thinker_batch_config = thinker.config.text_config
        self.talker_batch_config = talker.config
        with torch.no_grad():
            ids = torch.tensor([talker.text_eos_token, talker.text_pad_token], device=device)
            self.text_eos_part, self.text_pad_part = self.embed_text(ids).unbind(0)
        self.codec_end_ids = (int(talker.codec_pad_token), int(talker.codec_eos_token))
        n_codes = int(model.config.token2wav_config.dit_config.num_embeds)
        vocab = int(talker.config.vocab_size)
        allowed = torch.zeros(vocab, dtype=torch.bool, device=device)
        allowed[: min(n_codes, vocab)] = True
        allowed[list(self.codec_end_ids)] = True
        allowed[int(talker.codec_bos_token)] = False  # transformers suppresses it too
        self.allowed_codes = allowed
        self.speech_codes_only = allowed.clone()
        self.speech_codes_only[list(self.codec_end_ids)] = False
        self.initially_penalised = (
            int(talker.codec_mask_token),
            int(talker.codec_pad_token),
            int(talker.codec_bos_token),
        )

    def new_thinker_batch(self) -> RaggedBatch:
        return RaggedBatch(self.thinker_batch_config)

    def initially_seen(self) -> Any:
        """The codes penalised from the start (transformers' ``generate`` does so)."""
        import torch

        seen = torch.zeros_like(self.allowed_codes)
        seen[list(self.initially_penalised)] = True
        return seen

    def new_talker_batch(self) -> RaggedBatch:
        return RaggedBatch(self.talker_batch_config)

    def prefill_thinker(self, prompt: EncodedPrompt, *, for_talker: bool) -> ThinkerPrefill:
        import torch

        ids = torch.tensor([prompt.input_ids], dtype=torch.long, device=self.device)
        embeds = self.embed_text(ids)
        audio_positions = (ids == self.audio_token_id).unsqueeze(-1)
        if prompt.input_features is not None:
            tower_dtype = next(self.audio_tower.parameters()).dtype
            features = prompt.input_features.to(self.device, tower_dtype)
            feature_mask = prompt.feature_attention_mask.to(self.device)
            audio = self.thinker.get_audio_features(features, feature_mask)
            audio = getattr(audio, "last_hidden_state", audio)  # a tensor before transformers 5
            embeds = embeds.masked_scatter(audio_positions, audio.to(embeds.dtype))
        cache, out = self.new_thinker_batch().prefill(self.language_model, embeds)
        hidden = out.last_hidden_state
        logits = self.thinker.lm_head(hidden[:, -1])[0]
        context = None
        if for_talker:
            context = hidden + embeds.masked_fill(audio_positions, 0.0)
        return ThinkerPrefill(cache, ids.shape[1], logits, context)

    def thinker_step(self, batch: RaggedBatch, tokens: Any) -> tuple[Any, Any]:
        """(logits [rows, vocab], reply parts [rows, hidden]) after feeding ``tokens`` [rows]."""
        embeds = self.embed_text(tokens.view(-1, 1))
        hidden = batch.step(self.language_model, embeds)
        return self.thinker.lm_head(hidden), hidden + embeds[:, -1]

    def prefill_talker(self, context: Any, speaker_bos: int, first_part: Any) -> TalkerPrefill:
        """The talker's prefill: [context, the speaker's text bos, the first reply part]."""
        import torch

        bos = self.embed_text(torch.tensor([[speaker_bos]], device=self.device))
        inputs = torch.cat([context, bos, first_part.view(1, 1, -1)], dim=1)
        specials = torch.tensor(
            [[self.talker.codec_pad_token, self.talker.codec_bos_token]], device=self.device
        )
        inputs = torch.cat([inputs[:, :-2], inputs[:, -2:] + self.embed_code(specials)], dim=1)
        cache, out = self.new_talker_batch().prefill(
            self.talker.model, self.talker.thinker_to_talker_proj(inputs)
        )
        logits = self.talker.codec_head(out.last_hidden_state[:, -1])[0]
        return TalkerPrefill(cache, inputs.shape[1], logits, None)

    def talker_step(self, batch: RaggedBatch, frames: Any, parts: Any) -> tuple[Any, Any]:
        """(logits [rows, vocab], None) after feeding ``frames`` [rows, 1] and reply
        ``parts`` [rows, dim]."""
        inputs = self.embed_code(frames.view(-1, 1)) + parts.unsqueeze(1)
        last = batch.step(self.talker.model, self.talker.thinker_to_talker_proj(inputs))
        return self.talker.codec_head(last), None

    def complete_frames(
        self, hidden: Any, first_codes: Any, samplers: Sequence[CodeSampler]
    ) -> Any:
        """Frames [rows, 1]: a Qwen2.5-Omni frame is its one code."""
        return first_codes.view(-1, 1)
