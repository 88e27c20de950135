"""Several conversations decoded in one forward pass: a KV cache with rows of any length.

transformers' decoder layers take one ``DynamicCache`` whose tensors are
[rows, heads, length, head_dim] and a 2-D attention mask [rows, length + 1].
A ``RaggedBatch`` keeps such a cache for the conversations that are decoding
now, each row left-padded to the longest: padding is zeros that the mask
hides, and each row's positions count its own tokens only, so a row decodes
exactly as it would alone (the positions of audio and text prompts are
sequential in Qwen2.5-Omni, as transformers' ``get_rope_index`` computes
them without images or video).

- ``add`` joins a conversation after its own prefill (a batch of one):
  the shorter side is left-padded, then the rows are concatenated. Cost: one
  copy of the cache, once per conversation.
- ``remove`` drops rows (finished, cancelled) at once; columns that no row uses
  any more (the left padding of a long row that left) are trimmed.
- ``step`` runs one decoding step of every row through a model;
  ``prefill`` runs a new row's prompt into a fresh cache (before ``add``).

This module knows nothing of thinker or talker; it holds a cache and a mask.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


def _pad_left(tensor: Any, n: int) -> Any:
    """``tensor`` [rows, heads, length, dim] with ``n`` zero columns in front."""
    import torch.nn.functional as F

    return tensor if n == 0 else F.pad(tensor, (0, 0, n, 0))


class RaggedBatch:
    def __init__(self, config: Any) -> None:
        self._config = config
        self.row_ids: list[int] = []
        self.cache: Any = None  # DynamicCache
        self.mask: Any = None  # long [rows, length]: 1 where a row has a token
        self.positions: Any = None  # long [rows]: the next position of each row

    def __len__(self) -> int:
        return len(self.row_ids)

    def new_cache(self) -> Any:
        from transformers import DynamicCache

        return DynamicCache(config=self._config)

    def add(self, row_id: int, cache: Any, length: int) -> None:
        """Join a conversation whose prefill of ``length`` tokens filled ``cache`` (1 row)."""
        import torch

        device = cache.layers[0].keys.device
        mask = torch.ones(1, length, dtype=torch.long, device=device)
        position = torch.tensor([length], dtype=torch.long, device=device)
        if not self.row_ids:
            self.row_ids, self.cache, self.mask, self.positions = [row_id], cache, mask, position
            return
        width = self.mask.shape[1]
        grow_old, grow_new = max(0, length - width), max(0, width - length)
        for old, new in zip(self.cache.layers, cache.layers, strict=True):
            old.keys = torch.cat([_pad_left(old.keys, grow_old), _pad_left(new.keys, grow_new)])
            old.values = torch.cat(
                [_pad_left(old.values, grow_old), _pad_left(new.values, grow_new)]
            )
        self.mask = torch.cat(
            [
                torch.nn.functional.pad(self.mask, (grow_old, 0)),
                torch.nn.functional.pad(mask, (grow_new, 0)),
            ]
        )
        self.positions = torch.cat([self.positions, position])
        self.row_ids.append(row_id)

    def remove(self, row_ids: Iterable[int]) -> None:
        import torch

        gone = set(row_ids)
        keep = [i for i, row in enumerate(self.row_ids) if row not in gone]
        if len(keep) == len(self.row_ids):
            return
        if not keep:
            self.row_ids, self.cache, self.mask, self.positions = [], None, None, None
            return
        index = torch.tensor(keep, dtype=torch.long, device=self.mask.device)
        mask = self.mask.index_select(0, index)
        used = mask.any(dim=0).nonzero()
        first = int(used[0]) if len(used) else 0  # rows are left-padded: trim in front
        for layer in self.cache.layers:
            layer.keys = layer.keys.index_select(0, index)[:, :, first:]
            layer.values = layer.values.index_select(0, index)[:, :, first:]
        self.mask = mask[:, first:]
        self.positions = self.positions.index_select(0, index)
        self.row_ids = [self.row_ids[i] for i in keep]

    def prefill(self, model: Any, inputs_embeds: Any) -> tuple[Any, Any]:
        """(a fresh cache, ``model`` 's output) of a new row's prompt ``inputs_embeds``
        [1, length, dim] at positions 0 .. length - 1; the row is not added yet."""
        import torch

        cache = self.new_cache()
        length = inputs_embeds.shape[1]
        positions = torch.arange(length, device=inputs_embeds.device)
        out = model(
            inputs_embeds=inputs_embeds,
            position_ids=positions.view(1, 1, -1).expand(3, 1, -1),
            past_key_values=cache,
            use_cache=True,
        )
        return cache, out

    def step(self, model: Any, inputs_embeds: Any) -> Any:
        """Feed every row one position (``inputs_embeds`` [rows, 1, dim]) through
        ``model``; its last hidden states [rows, dim]."""
        mask, positions = self.step_inputs()
        out = model(
            inputs_embeds=inputs_embeds,
            attention_mask=mask,
            position_ids=positions,
            past_key_values=self.cache,
            use_cache=True,
        )
        self.advance(mask)
        return out.last_hidden_state[:, -1]

    def step_inputs(self) -> tuple[Any, Any]:
        """(attention mask [rows, length + 1], position ids [3, rows, 1]) of the next step."""
        import torch

        ones = torch.ones(len(self.row_ids), 1, dtype=torch.long, device=self.mask.device)
        mask = torch.cat([self.mask, ones], dim=1)
        positions = self.positions.view(1, -1, 1).expand(3, -1, -1)
        return mask, positions

    def advance(self, mask: Any) -> None:
        """The step framed by ``step_inputs`` ran: every row has one more token."""
        self.mask = mask
        self.positions = self.positions + 1
