"""Qwen3-Omni's thinker, talker and code predictor, one step at a time.

transformers' ``Qwen3OmniMoeForConditionalGeneration.generate`` runs the
thinker to its end, then the talker with its code predictor to its end, then
Code2Wav on the whole clip. ``Qwen3Networks`` calls the same sub-modules step
by step instead, computing what ``generate`` computes (tested against it):

- thinker prefill: token embeddings with the audio encoder's output scattered
  over the ``<|audio_pad|>`` positions, one pass through the language model.
  For the talker it keeps the **user turns** of the prompt (a turn's role is
  the token after its ``<|im_start|>``; system and earlier assistant turns are
  not read): audio positions as ``hidden_projection`` of the thinker's hidden
  state after layer ``accept_hidden_layer``, text positions as
  ``text_projection`` of their token embedding; and the projected embeddings
  of the prompt's last three tokens, ``<|im_start|>assistant\\n``;
- thinker step (batched): feed each row's last token; its logits give the next
  token, and ``text_projection`` of the token's embedding is the "reply part"
  the talker reads for it (no thinker hidden state, unlike Qwen2.5-Omni);
- talker prefill: [user parts, then nine assistant positions]: the three
  projected head tokens; ``<tts_pad>`` x 4 with the codec's no-think,
  think-start, think-end and the speaker's codec id added; ``<tts_text_bos>``
  with the codec pad; the first reply part with the codec bos. Its last
  logits give the first frame's code of codebook 0;
- a frame is 16 codes: the talker's code, then 15 residual codes from the code
  predictor (5 small layers; a fresh cache per frame, fed [talker's last
  hidden state, embedding of code 0], then each residual code with its own
  embedding table, each next code from its own head). Frames of all talking
  rows are completed in one batch: same lengths, no mask;
- talker step (batched): the sum of the last frame's 16 code embeddings plus
  the row's next reply part. After the text's last fed token the reply
  stream is ``<tts_text_eod>``, then ``<tts_pad>`` for ever.

Speakers are codec ids of the talker's vocabulary (``talker_config.speaker_id``):
no reference audio, nothing per speaker in Code2Wav. Positions are sequential
(``RaggedBatch``): without images or video, ``get_rope_index`` gives audio and
text consecutive positions on all three mRoPE axes. This module knows
nothing of conversations, audio or HTTP; it makes logits and frames.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from omnivox.engines.omni.batch import RaggedBatch
from omnivox.engines.omni.encoding import EncodedPrompt
from omnivox.engines.omni.graphs import GraphedFunction
from omnivox.engines.omni.qwen2_5_networks import TalkerPrefill, ThinkerPrefill
from omnivox.engines.omni.sampling import (
    QWEN3_RESIDUALS,
    QWEN3_TALKER,
    CodeSampler,
    CodeSampling,
    choose_residuals,
    gumbel_noise,
)

ASSISTANT_HEAD_TOKENS = 3  # <|im_start|> assistant \n
THINK_PAD_POSITIONS = 4  # <tts_pad> under no-think, think-start, think-end, speaker


@dataclass(frozen=True, slots=True)
class TalkerContext:
    """What the talker's prefill reads of the prompt."""

    user: Any  # [1, user positions, talker hidden]
    head: Any  # [1, 3, talker hidden]: <|im_start|>assistant\n, projected


class Qwen3Networks:
    code_sampling = QWEN3_TALKER

    def __init__(self, model: Any, device: Any, dtype: Any, *, cuda_graphs: bool = False) -> None:
        import torch

        self.model = model
        self.device = device
        self.dtype = dtype
        config = model.config
        thinker, talker = model.thinker, model.talker
        talker_config = config.talker_config
        self.thinker = thinker
        self.talker = talker
        self.language_model = thinker.model.language_model
        self.embed_text = thinker.get_input_embeddings()
        self.embed_code = talker.get_input_embeddings()
        self.predictor = talker.code_predictor
        self.residual_embeddings = self.predictor.get_input_embeddings()
        self.residual_heads = self.predictor.lm_head
        self.residual_codes = GraphedFunction(
            self._predict_residuals,
            "code predictor",
            enabled=cuda_graphs and device.type == "cuda",
        )
        thinker_config = config.thinker_config
        self.audio_token_id = int(thinker_config.audio_token_id)
        self.multimodal_ids = tuple(
            int(i)
            for i in (
                thinker_config.audio_token_id,
                getattr(thinker_config, "image_token_id", None),
                getattr(thinker_config, "video_token_id", None),
            )
            if i is not None
        )
        self.im_start_id = int(config.im_start_token_id)
        self.user_id = int(config.user_token_id)
        self.accept_layer = int(talker_config.accept_hidden_layer)
        self.thinker_batch_config = thinker.config.text_config
        self.talker_batch_config = talker_config.text_config
        self.n_groups = int(talker_config.num_code_groups)
        self.codebook = int(self.predictor.config.vocab_size)
        temperature = getattr(self.predictor.generation_config, "temperature", None) or 1.0
        self.residual_sampling = CodeSampling(
            QWEN3_RESIDUALS.top_k, QWEN3_RESIDUALS.top_p, float(temperature)
        )
        with torch.no_grad():
            ids = torch.tensor(
                [config.tts_bos_token_id, config.tts_eos_token_id, config.tts_pad_token_id],
                device=device,
            )
            parts = talker.text_projection(self.embed_text(ids))
            self.tts_bos_part, self.text_eos_part, self.text_pad_part = parts.unbind(0)
        self.codec_specials = (
            int(talker_config.codec_nothink_id),
            int(talker_config.codec_think_bos_id),
            int(talker_config.codec_think_eos_id),
        )
        self.codec_pad_id = int(talker_config.codec_pad_id)
        self.codec_bos_id = int(talker_config.codec_bos_id)
        eos = int(talker_config.codec_eos_token_id)
        self.codec_end_ids = (eos,)
        vocab = int(talker_config.text_config.vocab_size)
        allowed = torch.zeros(vocab, dtype=torch.bool, device=device)
        allowed[: min(self.codebook, vocab)] = True
        self.speech_codes_only = allowed.clone()
        allowed[eos] = True
        self.allowed_codes = allowed

    def new_thinker_batch(self) -> RaggedBatch:
        return RaggedBatch(self.thinker_batch_config)

    def new_talker_batch(self) -> RaggedBatch:
        return RaggedBatch(self.talker_batch_config)

    def initially_seen(self) -> Any:
        """No code is penalised before the first: ``generate`` penalises the codes it drew."""
        import torch

        return torch.zeros_like(self.allowed_codes)

    # -- thinker -----------------------------------------------------------------

    def prefill_thinker(self, prompt: EncodedPrompt, *, for_talker: bool) -> ThinkerPrefill:
        import torch

        ids = torch.tensor([prompt.input_ids], dtype=torch.long, device=self.device)
        embeds = self.embed_text(ids)
        if prompt.input_features is not None:
            audio_positions = (ids == self.audio_token_id).unsqueeze(-1)
            tower = self.thinker.model.audio_tower
            features = prompt.input_features.to(self.device, next(tower.parameters()).dtype)
            feature_mask = prompt.feature_attention_mask.to(self.device)
            audio = self.thinker.get_audio_features(features, feature_mask).last_hidden_state
            embeds = embeds.masked_scatter(audio_positions, audio.to(embeds.dtype))
        with self._layer_output(for_talker) as layer:
            cache, out = self.new_thinker_batch().prefill(self.language_model, embeds)
        logits = self.thinker.lm_head(out.last_hidden_state[:, -1])[0]
        context = None
        if for_talker:
            if self.accept_layer == 0:
                accepted = embeds
            elif self.accept_layer >= len(self.language_model.layers):
                accepted = out.last_hidden_state  # transformers hands the normed state there
            else:
                accepted = layer[0]
            context = self._talker_context(prompt.input_ids, embeds, accepted)
        return ThinkerPrefill(cache, ids.shape[1], logits, context)

    @contextlib.contextmanager
    def _layer_output(self, wanted: bool) -> Iterator[list[Any]]:
        """The output of thinker layer ``accept_hidden_layer - 1`` (before the final norm:
        transformers' ``hidden_states[accept_hidden_layer]``), kept by a hook: asking for
        every layer's states would hold 49 of them over the whole prompt."""
        kept: list[Any] = []
        layers = self.language_model.layers
        if not wanted or not 0 < self.accept_layer < len(layers):
            yield kept
            return

        def keep(_module: Any, _inputs: Any, output: Any) -> None:
            kept.append(output[0] if isinstance(output, tuple) else output)

        handle = layers[self.accept_layer - 1].register_forward_hook(keep)
        try:
            yield kept
        finally:
            handle.remove()

    def _talker_context(
        self, input_ids: Sequence[int], embeds: Any, accepted: Any
    ) -> TalkerContext:
        import torch

        user_positions, role = [], None
        for i, token in enumerate(input_ids):
            if token == self.im_start_id:
                role = input_ids[i + 1] if i + 1 < len(input_ids) else None
            if role == self.user_id:
                user_positions.append(i)
        index = torch.tensor(user_positions, dtype=torch.long, device=self.device)
        projection = self.talker.text_projection
        user = projection(embeds[0, index])
        multimodal = torch.tensor(
            [input_ids[i] in self.multimodal_ids for i in user_positions],
            dtype=torch.bool,
            device=self.device,
        )
        if bool(multimodal.any()):
            layer = accepted[0, index[multimodal]]
            user[multimodal] = self.talker.hidden_projection(layer).to(user.dtype)
        head = projection(embeds[:, -ASSISTANT_HEAD_TOKENS:])
        return TalkerContext(user.unsqueeze(0), head)

    def thinker_step(self, batch: RaggedBatch, tokens: Any) -> tuple[Any, Any]:
        """(logits [rows, vocab], reply parts [rows, talker hidden]) after feeding ``tokens``."""
        embeds = self.embed_text(tokens.view(-1, 1))
        hidden = batch.step(self.language_model, embeds)
        return self.thinker.lm_head(hidden), self.talker.text_projection(embeds[:, -1])

    # -- talker ------------------------------------------------------------------

    def prefill_talker(
        self, context: TalkerContext, speaker: int, first_part: Any
    ) -> TalkerPrefill:
        import torch

        pad = self.text_pad_part.view(1, 1, -1).expand(1, THINK_PAD_POSITIONS, -1)
        text = torch.cat(
            [
                context.head,
                pad,
                self.tts_bos_part.view(1, 1, -1),
                first_part.view(1, 1, -1),
            ],
            dim=1,
        )
        codes = torch.tensor(
            [[*self.codec_specials, speaker, self.codec_pad_id, self.codec_bos_id]],
            device=self.device,
        )
        codec = self.embed_code(codes)
        head_zeros = torch.zeros_like(codec[:, :ASSISTANT_HEAD_TOKENS])
        inputs = torch.cat([context.user, text + torch.cat([head_zeros, codec], dim=1)], dim=1)
        cache, out = self.new_talker_batch().prefill(self.talker.model, inputs)
        last = out.last_hidden_state[:, -1]
        return TalkerPrefill(cache, inputs.shape[1], self.talker.codec_head(last)[0], last[0])

    def talker_step(self, batch: RaggedBatch, frames: Any, parts: Any) -> tuple[Any, Any]:
        """(logits [rows, vocab], last hidden [rows, hidden]) after feeding the last
        ``frames`` [rows, 16] and reply ``parts`` [rows, hidden]."""
        inputs = self.frame_embedding(frames) + parts
        last = batch.step(self.talker.model, inputs.unsqueeze(1))
        return self.talker.codec_head(last), last

    def frame_embedding(self, frames: Any) -> Any:
        """[rows, hidden]: the sum of a frame's code embeddings, each codebook its own table."""
        total = self.embed_code(frames[:, 0])
        for group in range(1, self.n_groups):
            total = total + self.residual_embeddings[group - 1](frames[:, group])
        return total

    def complete_frames(
        self, hidden: Any, first_codes: Any, samplers: Sequence[CodeSampler] | None
    ) -> Any:
        """Frames [rows, 16]: each row's code 0 and its 15 residual codes, drawn with the
        rows' own generators (``samplers`` None: the most likely codes)."""
        noise = None
        if samplers is not None:
            generators = [s.generator for s in samplers]
            noise = gumbel_noise(generators, self.n_groups - 1, self.codebook, self.device)
        return self.residual_codes(hidden, first_codes, noise)

    def _predict_residuals(self, hidden: Any, first_codes: Any, noise: Any) -> Any:
        """The code predictor's 15 steps: work that depends only on the shapes."""
        import torch
        from transformers import DynamicCache

        predictor = self.predictor
        cache = DynamicCache(config=predictor.config)
        inputs = torch.stack([hidden, self.embed_code(first_codes)], dim=1)
        codes = [first_codes]
        for group in range(1, self.n_groups):
            out = predictor.model(inputs_embeds=inputs, past_key_values=cache, use_cache=True)
            logits = self.residual_heads[group - 1](out.last_hidden_state[:, -1])
            if noise is None:
                code = logits.argmax(dim=-1)
            else:
                code = choose_residuals(logits, noise[:, group - 1], self.residual_sampling)
            codes.append(code)
            inputs = self.residual_embeddings[group - 1](code).unsqueeze(1)
        return torch.stack(codes, dim=1)
