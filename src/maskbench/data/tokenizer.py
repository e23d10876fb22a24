"""Train and load Hugging Face `tokenizers` with a fixed layout of special tokens.

Every tokenizer maskbench trains puts the same special tokens first, so ids are identical across runs and
kinds: pad=0, unk=1, cls=2, sep=3, mask=4, and the 100 T5 sentinels `<extra_id_0..99>` = 5..104. The
objectives can then treat "id < 105" as special without asking, and a checkpoint's embedding rows mean
the same thing whichever tokenizer kind produced it. Loaded tokenizers (a `tokenizer.json` or a BERT
`vocab.txt`) keep their own ids; `special_ids` finds them by name.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Iterable, Iterator, Sequence

from ..config import nearest
from ..errors import DataError
from ..io import atomic_path

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"<extra_id_{i}>" for i in range(100)]
KINDS = ("wordpiece", "unigram", "bpe")
#: The smallest vocabulary that leaves room for a few ordinary tokens after the special ones.
MIN_VOCAB_SIZE = len(SPECIAL_TOKENS) + 16

# Other spellings of the five core tokens, so RoBERTa/T5-style tokenizer.json files load too.
SPECIAL_ALIASES = {
    "pad": ("[PAD]", "<pad>"),
    "unk": ("[UNK]", "<unk>"),
    "cls": ("[CLS]", "<s>", "<cls>"),
    "sep": ("[SEP]", "</s>", "<sep>"),
    "mask": ("[MASK]", "<mask>"),
}


@dataclass(frozen=True)
class SpecialIds:
    """The ids objectives and loaders need; `all` lists every special id (never masked, never predicted)."""

    pad: int
    unk: int
    cls: int
    sep: int
    mask: int
    sentinels: list[int] = field(default_factory=list)

    @property
    def eos(self) -> int:
        return self.sep

    @property
    def all(self) -> list[int]:
        return sorted({self.pad, self.unk, self.cls, self.sep, self.mask, *self.sentinels})


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        hint = nearest(kind, KINDS)
        tail = f"; did you mean '{hint}'?" if hint else ""
        raise DataError(f"unknown tokenizer kind {kind!r}: use one of {', '.join(KINDS)}{tail}")


def _check_vocab_size(vocab_size: int) -> None:
    if vocab_size < MIN_VOCAB_SIZE:
        raise DataError(f"vocab_size {vocab_size} is too small for the {len(SPECIAL_TOKENS)} special tokens "
                        f"([PAD] [UNK] [CLS] [SEP] [MASK] and 100 sentinels); use at least {MIN_VOCAB_SIZE}")


def _post_processor(cls_id: int, sep_id: int):
    from tokenizers import processors  # lazy: `maskbench --help` imports this module

    return processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )


def build_untrained(kind: str, lowercase: bool = True):
    """An empty tokenizer of `kind` with its normalizer, pre-tokenizer and decoder, plus its trainer class."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers  # lazy: `maskbench --help` imports this module

    _check_kind(kind)
    if kind == "wordpiece":
        tok = Tokenizer(models.WordPiece(unk_token="[UNK]", max_input_chars_per_word=100))
        tok.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True,
                                                    strip_accents=None, lowercase=lowercase)
        tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tok.decoder = decoders.WordPiece(prefix="##")
    elif kind == "unigram":
        tok = Tokenizer(models.Unigram())
        steps = [normalizers.NFKC()] + ([normalizers.Lowercase()] if lowercase else [])
        tok.normalizer = normalizers.Sequence(steps)
        tok.pre_tokenizer = pre_tokenizers.Metaspace()
        tok.decoder = decoders.Metaspace()
    else:
        tok = Tokenizer(models.BPE(unk_token="[UNK]"))
        steps = [normalizers.NFC()] + ([normalizers.Lowercase()] if lowercase else [])
        tok.normalizer = normalizers.Sequence(steps)
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
        tok.decoder = decoders.ByteLevel()
    return tok


def _trainer(kind: str, vocab_size: int, min_frequency: int, show_progress: bool):
    from tokenizers import pre_tokenizers, trainers  # lazy: `maskbench --help` imports this module

    if kind == "wordpiece":
        return trainers.WordPieceTrainer(vocab_size=vocab_size, min_frequency=min_frequency,
                                         special_tokens=SPECIAL_TOKENS, show_progress=show_progress,
                                         continuing_subword_prefix="##")
    if kind == "unigram":
        return trainers.UnigramTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, unk_token="[UNK]",
                                       show_progress=show_progress)
    return trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=SPECIAL_TOKENS,
                               show_progress=show_progress,
                               initial_alphabet=pre_tokenizers.ByteLevel.alphabet())


def train_tokenizer(inputs: Sequence[str | Path] | str | Path, kind: str = "wordpiece", vocab_size: int = 8000,
                    out_path: str | Path | None = None, *, lowercase: bool = True, min_frequency: int = 2,
                    text_field: str = "text", texts: Iterable[str] | None = None, show_progress: bool = False):
    """Train a `kind` tokenizer on the inputs (files, folders, globs, see `sources`) or on `texts`.

    The special tokens take ids 0..104 in `SPECIAL_TOKENS` order. A `[CLS] A [SEP] B [SEP]` post-processor
    is attached so `tokenizer.encode(a, b)` gives BERT's pair layout with type ids. Written atomically to
    `out_path` (a `tokenizer.json`) when given. The input is read lazily and handed over in items of
    `TRAIN_ITEM_CHARS`, so memory grows with the number of distinct words, not with the corpus.
    """
    from .sources import iter_sentences, resolve_inputs  # lazy: `maskbench --help` imports this module

    _check_kind(kind)
    _check_vocab_size(vocab_size)
    tok = build_untrained(kind, lowercase=lowercase)
    if texts is None:
        sources = resolve_inputs(inputs)
        texts = iter_sentences(sources, text_field=text_field)
    seen = 0

    def nonempty():
        nonlocal seen
        for text in texts:
            if text:
                seen += 1
                yield text

    try:
        if kind == "wordpiece":
            tok = _train_wordpiece(tok, _items(nonempty()), vocab_size, min_frequency, show_progress)
        else:
            tok.train_from_iterator(_items(nonempty()), trainer=_trainer(kind, vocab_size, min_frequency, show_progress))
    except Exception as e:  # the Rust trainer raises plain Exceptions with its own message
        if isinstance(e, DataError):
            raise
        raise DataError(f"tokenizer training failed: {e}") from None
    if seen == 0:
        raise DataError("no text to train the tokenizer on: the inputs are empty")
    for i, token in enumerate(SPECIAL_TOKENS):
        if tok.token_to_id(token) != i:
            raise DataError(f"trained tokenizer put {token} at id {tok.token_to_id(token)} instead of {i}")
    tok.post_processor = _post_processor(tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]"))
    tok = _canonical(tok, kind)
    if out_path is not None:
        save_tokenizer(tok, out_path)
    return tok


#: Characters in one item handed to a Rust trainer. `train_from_iterator` reads 256 items ahead, so this
#: bounds the text held at once (256 x 16K characters) whatever the size of the corpus or of its lines.
TRAIN_ITEM_CHARS = 1 << 14


def _pieces(text: str, limit: int = TRAIN_ITEM_CHARS) -> Iterator[str]:
    """`text` in pieces of at most `limit` characters, cut at a space that begins a word.

    The piece after a cut starts with that word, and every pre-tokenizer here (BERT's, Metaspace,
    byte-level with its added prefix space) then splits the pieces into the words of the whole text,
    so a trained vocabulary does not depend on where lines were cut. A word longer than `limit`
    (no such space) is cut where it must be.
    """
    while len(text) > limit:
        cut = text.rfind(" ", 1, limit)
        while cut > 0 and text[cut + 1].isspace():
            cut = text.rfind(" ", 1, cut)
        if cut <= 0:
            yield text[:limit]
            text = text[limit:]
        else:
            yield text[:cut]
            text = text[cut + 1:]
    yield text


def _items(texts: Iterable[str], limit: int = TRAIN_ITEM_CHARS) -> Iterator[list[str]]:
    """The texts, lazily, as lists of about `limit` characters (long texts cut by `_pieces`)."""
    item: list[str] = []
    size = 0
    for text in texts:
        for piece in _pieces(text, limit):
            item.append(piece)
            size += len(piece)
            if size >= limit:
                yield item
                item, size = [], 0
    if item:
        yield item


# WordPiece training, made deterministic. The library's WordPieceTrainer gives continuation pieces ("##c")
# ids in hash-map order, so ties between equally frequent merges break differently on every run (and the
# vocabulary changes). Its byte-pair trainer without a prefix sorts its alphabet and is deterministic, so
# we train that on words whose non-initial characters are moved to a private-use plane (a stand-in for
# "##c"), then map the pieces back: the same vocabulary WordPiece training computes. Words are counted
# here first (normalizing whole items at once), so only distinct words are marked in Python and only the
# counts are held; the trainer then reads each word repeated `count` times, in items of bounded size.
_CONTINUATION = 0xF0000
_TO_CONTINUATION = {i: _CONTINUATION + i for i in range(0x10000)}


@lru_cache(maxsize=1)
def _bert_words() -> "re.Pattern":
    """Words as BertPreTokenizer splits them: runs of non-space non-punctuation, or one punctuation mark."""
    ascii_punct = [chr(c) for c in range(128) if chr(c) in "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"]
    unicode_punct = [chr(c) for c in range(128, 0x10000) if unicodedata.category(chr(c)).startswith("P")]
    punct = "".join(re.escape(c) for c in ascii_punct + unicode_punct)
    return re.compile(f"[^\\s{punct}]+|[{punct}]|[^\\s]")


def _mark(word: str) -> str:
    return word[0] + word[1:].translate(_TO_CONTINUATION)


def _unmark(piece: str) -> str:
    text = "".join(chr(ord(c) - _CONTINUATION) if ord(c) >= _CONTINUATION else c for c in piece)
    if piece and _CONTINUATION <= ord(piece[0]) < _CONTINUATION + 0x10000:
        return "##" + text
    return text


def _train_wordpiece(tok, items: Iterable[list[str]], vocab_size: int, min_frequency: int, show_progress: bool):
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers  # lazy: `maskbench --help` imports this module

    normalizer = tok.normalizer
    words = _bert_words()
    counts: Counter = Counter()
    for item in items:
        counts.update(words.findall(normalizer.normalize_str(" ".join(item))))

    def repeated():
        item, size = [], 0
        for word in sorted(counts):
            marked = _mark(word)
            per_piece = max(1, TRAIN_ITEM_CHARS // (len(marked) + 1))
            left = counts[word]
            while left:
                repeats = min(left, per_piece)
                item.append(" ".join([marked] * repeats))
                size += repeats * (len(marked) + 1)
                left -= repeats
                if size >= TRAIN_ITEM_CHARS:
                    yield item
                    item, size = [], 0
        if item:
            yield item

    bpe = Tokenizer(models.BPE(unk_token="[UNK]"))
    bpe.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=SPECIAL_TOKENS,
                                  show_progress=show_progress)
    bpe.train_from_iterator(repeated(), trainer=trainer)
    vocab: dict[str, int] = {}
    for piece, _ in sorted(bpe.get_vocab().items(), key=lambda item: item[1]):
        word = piece if piece in SPECIAL_TOKENS else _unmark(piece)
        if word not in vocab:
            vocab[word] = len(vocab)
    tok.model = models.WordPiece(vocab=vocab, unk_token="[UNK]", max_input_chars_per_word=100)
    tok.add_special_tokens(SPECIAL_TOKENS)
    return tok


def _canonical(tok, kind: str):
    """The trained tokenizer in a form that survives save/load unchanged and does not depend on threads.

    The Unigram trainer orders pieces of equal score by hash-map iteration (different on every run) and
    prints scores with more digits than its JSON reader round-trips; sorting ties by piece and rounding the
    log-probabilities to 1e-6 makes training deterministic and `tokenizer_hash` stable across save/load.
    """
    from tokenizers import Tokenizer  # lazy: `maskbench --help` imports this module

    data = json.loads(tok.to_str())
    if kind == "unigram":
        vocab = data["model"]["vocab"]
        head, rest = vocab[: len(SPECIAL_TOKENS)], vocab[len(SPECIAL_TOKENS):]
        rest = sorted(([piece, round(score, 6)] for piece, score in rest), key=lambda item: (-item[1], item[0]))
        data["model"]["vocab"] = [[piece, round(score, 6)] for piece, score in head] + rest
    return Tokenizer.from_str(json.dumps(data, ensure_ascii=False))


def check_tokenizer_fits(tokenizer, vocab_size: int, model: str | Path) -> None:
    """Refuse a tokenizer that is not the model's: every command that feeds text to a model calls this.

    A smaller vocabulary maps words to the wrong embeddings, a larger one indexes past the table. The one
    size difference allowed is T5's convention of padding the embedding table up to a multiple of 128.
    """
    size = tokenizer.get_vocab_size(with_added_tokens=True)
    padded = -(-size // 128) * 128
    if size == vocab_size or (size < vocab_size == padded):
        return
    raise DataError(f"the model {model} has a vocabulary of {vocab_size} tokens but the tokenizer has {size}; "
                    f"use the tokenizer the model was trained with (--tokenizer)")


def save_tokenizer(tokenizer, path: str | Path) -> Path:
    path = Path(path)
    if path.is_dir() or path.suffix != ".json":
        path = path / "tokenizer.json" if path.is_dir() else path
    with atomic_path(path) as tmp:
        tokenizer.save(str(tmp))
    return path


def _from_vocab_txt(path: Path, lowercase: bool | None):
    """A BERT WordPiece tokenizer from `vocab.txt` (one token per line; line number = id)."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers  # lazy: `maskbench --help` imports this module

    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise DataError(f"{path} is not UTF-8 text; a BERT vocab.txt has one token per line") from None
    vocab: dict[str, int] = {}
    for token in lines:
        token = token.rstrip("\r")
        if token and token not in vocab:
            vocab[token] = len(vocab)
        elif not token:
            continue
    if not vocab:
        raise DataError(f"{path} is empty; a BERT vocab.txt has one token per line")
    missing = [t for t in ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]") if t not in vocab]
    if missing:
        raise DataError(f"{path} lacks the special tokens {' '.join(missing)}; is it a BERT vocab.txt?")
    if lowercase is None:  # cased vocabularies hold capitalised words; uncased ones almost none
        upper = sum(1 for t in vocab if t[:1].isupper() and not t.startswith("["))
        lowercase = upper < 0.01 * len(vocab)
    tok = Tokenizer(models.WordPiece(vocab=vocab, unk_token="[UNK]", max_input_chars_per_word=100))
    tok.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True, strip_accents=None,
                                                lowercase=lowercase)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece(prefix="##")
    tok.post_processor = _post_processor(vocab["[CLS]"], vocab["[SEP]"])
    present = [t for t in SPECIAL_TOKENS if t in vocab]
    tok.add_special_tokens(present)
    return tok


def load_tokenizer(path: str | Path, lowercase: bool | None = None):
    """Load a `tokenizer.json`, a BERT `vocab.txt`, or a folder holding either (tokenizer.json preferred)."""
    from tokenizers import Tokenizer  # lazy: `maskbench --help` imports this module

    path = Path(path)
    if path.is_dir():
        for name in ("tokenizer.json", "vocab.txt"):
            if (path / name).is_file():
                path = path / name
                break
        else:
            raise DataError(f"{path} holds neither tokenizer.json nor vocab.txt")
    if not path.is_file():
        raise DataError(f"tokenizer not found: {path}; train one with 'maskbench tokenizer train'")
    if path.suffix == ".txt":
        return _from_vocab_txt(path, lowercase)
    try:
        return Tokenizer.from_file(str(path))
    except Exception as e:  # the Rust loader raises plain Exceptions
        raise DataError(f"{path} is not a valid tokenizer.json ({str(e).splitlines()[0][:120]})") from None


def special_ids(tokenizer) -> SpecialIds:
    """Ids of the special tokens, found by name (`[PAD]` or `<pad>` etc.); sentinels in order, if present."""
    found = {}
    for role, names in SPECIAL_ALIASES.items():
        for name in names:
            idx = tokenizer.token_to_id(name)
            if idx is not None:
                found[role] = idx
                break
        else:
            needed = " ".join(a[0] for a in SPECIAL_ALIASES.values())
            raise DataError(f"the tokenizer has no {names[0]} token; maskbench needs {needed}")
    sentinels = []
    for i in range(100):
        idx = tokenizer.token_to_id(f"<extra_id_{i}>")
        if idx is None:
            break
        sentinels.append(idx)
    return SpecialIds(sentinels=sentinels, **found)


def canonical_json(tokenizer) -> str:
    return json.dumps(json.loads(tokenizer.to_str()), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def tokenizer_hash(tokenizer) -> str:
    """sha256 of the tokenizer's canonical JSON: equal hashes mean identical tokenization."""
    return hashlib.sha256(canonical_json(tokenizer).encode("utf-8")).hexdigest()


def token_dtype(vocab_size: int) -> str:
    """The smallest unsigned type that holds every id (uint16 halves the shards of a <65,536 vocabulary)."""
    return "uint16" if vocab_size <= 65535 else "uint32"
