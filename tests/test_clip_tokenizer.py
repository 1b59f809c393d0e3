"""CLIP's tokenizer against OpenAI's as the open_clip_torch wheel ships it (``open_clip/tokenizer.py``, its
vocabulary ``bpe_simple_vocab_16e6.txt.gz``), on a corpus built to reach every cleaning and splitting rule.

transformers' ``CLIPTokenizer`` is not the oracle: it cleans HTML entities, ligatures and full-width text
otherwise than the tokenizer OpenAI trained with."""
import json
import random

import numpy as np
import pytest

from clip_numpy.config import WeightsError
from clip_numpy.tokenizer import Tokenizer, clean
from clip_numpy.weights.vocab import check_vocab_json, read_merges
from tests.clip_helpers import hub_tokenizer_files, open_clip_tokenizer, open_clip_vocab

CORPUS = [
    # plain, case, contractions (matched before words, in any case)
    "a photo of a cat", "Red car at night", "A DOG!!!", "it's I'm we're they've she'll he'd don't",
    "IT'S WE'VE", "o'clock rock'n'roll", "cats' toys",
    # accents, composed and decomposed; other Latin letters
    "café crème brûlée", "naïve façade", "Ångström über Straße", "São Paulo à noite", "Łódź", "œuvre Ærø",
    "cafe\u0301 e\u0301\u0301", "Z̤͔ͧ̑̓ä͖̭̈̇lͮ̒ͫǫ̗͙",
    # other scripts
    "東京の夜景", "北京烤鸭", "서울 야경", "カメラ ｶﾒﾗ", "東京 tower at night", "Привет мир", "Ελληνικά",
    "مرحبا بالعالم", "שלום עולם", "नमस्ते दुनिया", "ภาษาไทย",
    # emoji: single, runs, skin tones, ZWJ families, flags, keycaps
    "🐱 cat", "🚗💨 at night 🌃", "👍🏽", "👨‍👩‍👧‍👦", "🇯🇵🇫🇷", "1️⃣ #️⃣", "❤️‍🔥",
    # HTML entities: named, numeric, double-escaped, without semicolons, inside tags
    "Tom &amp; Jerry", "&lt;b&gt;bold&lt;/b&gt;", "caf&eacute;", "&amp;amp; double", "&amp;lt;twice&amp;gt;",
    "&#128512; and &#x1F600;", "&nbsp;x&nbsp;", "&quot;quoted&quot;", "fish &amp chips", "<p>a &amp; b</p>",
    "&notanentity; &", "AT&T", "&copy; 2024 &reg;", "&amp;amp;amp; three times", "<b>&amp;amp;</b>",
    # ligatures and full-width letters (ftfy unfolds them)
    "ﬁsh ﬂower ﬀ ﬃ ﬄ ﬆ", "ＡＢＣ ｄｅｆ １２３", "ｈｅｌｌｏ　ｗｏｒｌｄ！", "Ｔｏｋｙｏ ２０２４",
    # mojibake, curly quotes, dashes, ellipses
    "cafÃ©", "â€œquotedâ€\x9d", "Ã¼ber", "“smart” ‘quotes’", "it’s", "em—dash en–dash…",
    # URLs, e-mail, paths, hashtags, code
    "https://example.com/path?q=red+car&x=1#frag", "www.example.org/a_b-c", "user@example.com",
    "C:\\Users\\photos\\img_001.JPG", "#sunset @home", "x = f(y) + 2**3; // comment",
    # whitespace: runs, tabs, newlines, no-break, em and ideographic spaces, zero-width
    "  lots   of \t\t spaces \n\n newlines  ", "\u00a0nbsp\u2003em space\u3000wide", "\x0b\x0c\r\n",
    "\u200bzero\u200dwidth\ufeff", "", "   ", "\n",
    # punctuation runs and symbols
    "wow!!! ??? ... --- *** ;;;", "(a) [b] {c} <d>", "~`^|\\ $€£¥ ©®™ §¶", "a.b,c;d:e", "---___===",
    "<|endoftext|> <|startoftext|>",
    # digits one at a time, other numerals
    "1234567890", "3.14159", "½ ² ³ Ⅻ ٣ ๓", "10,000 photos from 2023",
    # control characters
    "a\x00b\x07c", "tab\tand\x1fseparator",
    # longer than the context: words, one long word, emoji, CJK; and the boundary around 77
    "a photo of a red car at night " * 20, "supercalifragilisticexpialidocious" * 12, "🐱" * 100, "東京" * 80,
    *(" ".join(["cat"] * n) for n in (74, 75, 76, 77)),
]


def random_texts(count: int, seed: int = 0) -> list[str]:
    """Texts of random characters drawn from many scripts, symbols, emoji and whitespace."""
    rng = random.Random(seed)
    ranges = [(0x20, 0x7E), (0xA0, 0x17F), (0x300, 0x36F), (0x370, 0x3FF), (0x400, 0x4FF), (0x590, 0x6FF),
              (0x900, 0x97F), (0x2000, 0x206F), (0x2100, 0x218F), (0x3000, 0x30FF), (0x4E00, 0x4FFF),
              (0xAC00, 0xAD00), (0xFB00, 0xFB06), (0xFF01, 0xFF5E), (0x1F300, 0x1F64F), (0x1F900, 0x1F9FF)]
    texts = []
    for _ in range(count):
        chars = [chr(rng.randint(*rng.choice(ranges))) for _ in range(rng.randint(1, 60))]
        texts.append("".join(c if rng.random() > 0.15 else " " for c in chars))
    return texts


@pytest.fixture(scope="module")
def tokenizers():
    return Tokenizer(read_merges(open_clip_vocab(), 49408)), open_clip_tokenizer()


@pytest.mark.parametrize("texts", [CORPUS, random_texts(300)], ids=["corpus", "random"])
def test_token_ids_equal_open_clip(tokenizers, texts):
    ours, reference = tokenizers
    expected = reference(texts).numpy()
    got = ours(texts)
    assert got.dtype == np.int64 and got.shape == (len(texts), 77)
    mismatched = [t for t, a, b in zip(texts, got, expected) if not np.array_equal(a, b)]
    assert mismatched == []


def test_the_corpus_reaches_the_rules(tokenizers):
    """The corpus is not trivially tokenized: it cuts, pads, fixes, unescapes and splits."""
    ours, _ = tokenizers
    ids = ours(CORPUS)
    lengths = (ids != 0).sum(axis=1)
    assert lengths.min() == 2 and (lengths == 77).sum() >= 5  # an empty text, and several cut ones
    assert (ids[lengths == 77, -1] == ours.end).all()
    assert clean("ﬁsh ＡＢＣ &amp;amp; cafÃ©  \t x") == "fish abc & café x"
    assert ours.encode("it's") == ours.encode("it") + ours.encode("'s")
    assert len(ours.encode("1234")) == 4  # one token a digit


def test_special_token_spellings_are_text(tokenizers):
    """The one deliberate difference: open_clip turns its special tokens' spellings in a text into those
    tokens, so a text could end itself early; here they stay text."""
    ours, reference = tokenizers
    typed = "a cat <end_of_text> and a dog"
    assert reference.eot_token_id in reference(typed).numpy()[0, 1:4]
    ids = ours(typed)[0]
    assert list(ids).count(ours.end) == 1 and ids[(ids != 0).sum() - 1] == ours.end


def test_the_hub_vocabulary_files_agree(tokenizers, tmp_path):
    """The hub ships merges.txt (a '#version' line, then the merges) and vocab.json; both read the same."""
    _, reference = tokenizers
    for name, data in hub_tokenizer_files(reference).items():
        (tmp_path / name).write_bytes(data)
    vocab = json.loads((tmp_path / "vocab.json").read_text(encoding="utf-8"))
    merges = read_merges(tmp_path / "merges.txt", 49408)
    assert merges == read_merges(open_clip_vocab(), 49408)
    check_vocab_json(tmp_path / "vocab.json", merges)
    vocab["cat</w>"], vocab["dog</w>"] = vocab["dog</w>"], vocab["cat</w>"]
    (tmp_path / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    with pytest.raises(WeightsError, match="does not match the merges"):
        check_vocab_json(tmp_path / "vocab.json", merges)
