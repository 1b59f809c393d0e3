"""CLIP's tokenizer, as OpenAI trained its models with it: byte-level BPE over cleaned, lower-cased text.

Cleaning as OpenAI's ``simple_tokenizer`` (and ``open_clip``'s copy) does: ``ftfy.fix_text`` (mojibake,
ligatures, full-width letters, curly quotes), HTML entities unescaped twice, runs of whitespace to one space,
lower case. Then a regex split into words, numbers one digit at a time and runs of other symbols; each piece's
UTF-8 bytes as printable characters, merged by the BPE ranks; ``<start_of_text> ... <end_of_text>``, cut to
the context keeping the end token, zero-padded.

One deliberate difference: the special tokens' spellings typed in a text are ordinary text here, not the
special tokens themselves, so a query cannot end itself early.
"""
from __future__ import annotations

import html
from functools import lru_cache
from typing import Iterable, Sequence

import ftfy
import numpy as np
import regex

CONTEXT_LENGTH = 77
# Words (letters), single digits, runs of anything else but whitespace; English contractions first.
_PIECES = regex.compile(r"'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+", regex.IGNORECASE)
_END_OF_WORD = "</w>"


def byte_symbols() -> dict[int, str]:
    """Each byte as one printable character (GPT-2's table): printable Latin-1 bytes stand for themselves, the
    others for characters from U+0100 on. Its order (printable bytes first) is the vocabulary's order."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + extra)
            extra += 1
    return table


def clean(text: str) -> str:
    """The text as the model saw text in training: fixed by ftfy, unescaped, whitespace collapsed, lower case."""
    text = html.unescape(html.unescape(ftfy.fix_text(text))).strip()
    return " ".join(text.split()).lower()


def vocabulary(merges: Sequence[tuple[str, str]]) -> list[str]:
    """Token strings in id order: the 256 byte symbols, the same ending a word, one per merge, then the start
    and end tokens."""
    symbols = list(byte_symbols().values())
    return [*symbols, *(s + _END_OF_WORD for s in symbols), *("".join(m) for m in merges),
            "<|startoftext|>", "<|endoftext|>"]


class Tokenizer:
    """Texts to (N, context_length) int64 token ids. Thread-safe; each distinct word is merged once."""

    def __init__(self, merges: Sequence[tuple[str, str]], context_length: int = CONTEXT_LENGTH) -> None:
        if context_length < 2:
            raise ValueError("the context must hold at least the start and end tokens")
        self.ranks = {tuple(m): i for i, m in enumerate(merges)}
        self.ids = {token: i for i, token in enumerate(vocabulary(merges))}
        self.vocab_size = len(self.ids)
        self.start, self.end = self.vocab_size - 2, self.vocab_size - 1
        self.context_length = context_length
        self._bytes = byte_symbols()
        self._word_ids = lru_cache(maxsize=1 << 16)(self._merge)

    def forget_words(self) -> None:
        """Empty the cache of merged words (to time a text as if every word were new)."""
        self._word_ids.cache_clear()

    def _merge(self, piece: str) -> tuple[int, ...]:
        """The ids of one piece (its bytes as symbols): repeatedly join every occurrence, left to right, of the
        adjacent pair with the lowest merge rank."""
        word = [*piece[:-1], piece[-1] + _END_OF_WORD]
        ranks = self.ranks
        while len(word) > 1:
            pairs = zip(word, word[1:])
            rank, pair = min((ranks.get(p, len(ranks)), p) for p in pairs)
            if rank == len(ranks):
                break
            merged: list[str] = []
            i = 0
            while i < len(word):
                if i + 1 < len(word) and (word[i], word[i + 1]) == pair:
                    merged.append(word[i] + word[i + 1])
                    i += 2
                else:
                    merged.append(word[i])
                    i += 1
            word = merged
        return tuple(self.ids[s] for s in word)

    def encode(self, text: str) -> list[int]:
        """The token ids of ``text`` without start and end tokens, and uncut."""
        ids: list[int] = []
        for piece in _PIECES.findall(clean(text)):
            ids.extend(self._word_ids("".join(self._bytes[b] for b in piece.encode("utf-8"))))
        return ids

    def __call__(self, texts: str | Iterable[str]) -> np.ndarray:
        """(N, context_length) int64: start token, the text's ids, end token, zeros after; a text too long is
        cut so that the end token is the last."""
        texts = [texts] if isinstance(texts, str) else list(texts)
        out = np.zeros((len(texts), self.context_length), np.int64)
        for row, text in zip(out, texts):
            ids = [self.start, *self.encode(text)][:self.context_length - 1] + [self.end]
            row[:len(ids)] = ids
        return out
