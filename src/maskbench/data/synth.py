"""The built-in synthetic language: an English-like corpus with known latent structure, generated in seconds.

Why synthetic: a study of corruption policies needs pretraining that measurably helps within minutes on a
laptop, and fine-tuning tasks whose answers depend on structure the pretraining text teaches. Real text
does not offer that at this size; this language does, and every latent variable is kept alongside.

What it has:
- a lexicon of a few thousand word forms built from morphemes: nouns, verbs and adjectives from random
  syllable stems, derived words (`-ment`, `-ion`, `-ful`, `-ous`, `-ly`...) sharing stems, inflections for
  number (`-s`/`-es`) and gender (`-o`/`-a`), all drawn with Zipfian frequencies, so subword tokenization
  and whole-word masking have something to do;
- agreement across a distance: the verb agrees in number with its subject across a relative clause whose
  own noun often has the other number (an attractor); adjectives agree in gender and number with their
  noun; pronouns in later sentences agree in gender and number with the document's protagonist;
- nested clauses: object relatives, sometimes center-embedded twice (`the X that the Y that a Z sees likes`);
- documents of 3-8 sentences whose order carries information: the protagonist is introduced with an
  indefinite determiner first and then referred to by `the` or a pronoun; discourse markers (`once`,
  `then`, `later`, `finally`) follow the story's order; so NSP and SOP are learnable;
- latent labels: each document has a mood and each sentence a sentiment (positive/negative) that
  colours its adjectives and adverbs (`never` flips the surface polarity of the adverb); the word class of
  every word is known.

The lexicon depends only on `language` (default 0), sampling only on `seed`: a corpus and task folders
built with different seeds share one language, so pretraining on one helps on the others. Everything is
vectorised with numpy (about 1 M words per second on one core); the same arguments always give
byte-identical files.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..errors import DataError
from ..io import atomic_dir, atomic_path, claim_out_dir, marked_kind

GENERATOR_VERSION = 1

#: Word classes, in the order of their one-letter codes in `CLASS_CODES`.
CLASS_NAMES = ["determiner", "noun", "verb", "adjective", "adverb", "pronoun", "preposition", "conjunction",
               "complementizer", "negation", "marker", "punctuation"]
CLASS_CODES = ["D", "N", "V", "J", "R", "P", "I", "C", "T", "X", "M", "."]
SENTIMENTS = ["negative", "positive"]
GENDERS = ["masculine", "feminine"]
NUMBERS = ["singular", "plural"]

_CONSONANTS = list("bdfgklmnprstvz")
_VOWELS = list("aeiou")
_NOUN_SUFFIXES = ["ment", "ion", "ness", "er", "ity", "hood"]
_ADJ_SUFFIXES = ["ful", "ous", "ic", "al", "ive", "ish"]
_VERB_PREFIXES = ["re", "un", "pre", "dis", "over"]

_DET_SINGULAR = ["the", "a", "this", "that", "every", "one"]
_DET_PLURAL = ["the", "some", "these", "those", "many", "two"]
_PREPOSITIONS = ["with", "near", "under", "over", "behind", "beside", "across", "without", "among", "toward"]
_PRONOUNS = {(0, 0): "he", (1, 0): "she", (0, 1): "they", (1, 1): "they"}
# by adjective polarity; no generated stem can take these shapes (clusters, double or initial vowels, y, qu)
_INTENSIFIERS = [["too", "awfully"], ["truly", "very"], ["rather", "quite"]]
_FIRST_MARKERS = ["once", "today"]
_MIDDLE_MARKERS = ["then", "later", "next", "afterwards", "soon", "meanwhile"]
_LAST_MARKERS = ["finally", "eventually"]


# Slots of the sentence template, in surface order; each slot has one word class.
SLOTS = [
    ("marker", "marker"), ("marker_comma", "punctuation"), ("pronoun", "pronoun"),
    ("subj_det", "determiner"), ("subj_int", "adverb"), ("subj_adj", "adjective"), ("subj_noun", "noun"),
    ("rel", "complementizer"), ("rel_det", "determiner"), ("rel_int", "adverb"), ("rel_adj", "adjective"),
    ("rel_noun", "noun"),
    ("rel2", "complementizer"), ("rel2_det", "determiner"), ("rel2_noun", "noun"), ("rel2_verb", "verb"),
    ("rel_verb", "verb"),
    ("neg", "negation"), ("verb", "verb"), ("obj_det", "determiner"), ("obj_int", "adverb"), ("obj_adj", "adjective"),
    ("obj_noun", "noun"), ("adv_int", "adverb"), ("adv", "adverb"),
    ("prep", "preposition"), ("pp_det", "determiner"), ("pp_int", "adverb"), ("pp_adj", "adjective"),
    ("pp_noun", "noun"),
    ("conj", "conjunction"), ("verb2", "verb"), ("obj2_det", "determiner"), ("obj2_noun", "noun"),
    ("end", "punctuation"),
]
SLOT = {name: i for i, (name, _) in enumerate(SLOTS)}
_ADJECTIVE_SLOTS = ("subj_adj", "rel_adj", "obj_adj", "pp_adj")  # each right after its intensifier slot
_INTENSIFIED_SLOTS = _ADJECTIVE_SLOTS + ("adv",)  # the adverb's intensifier is used by some profiles only
SLOT_CLASS = np.array([CLASS_NAMES.index(c) for _, c in SLOTS])


@dataclass(frozen=True)
class Profile:
    """A variant of the language: lexicon sizes, and how often the corpus marks an adjective's polarity
    with an intensifier (`too`/`awfully` negative, `truly`/`very` positive, `rather`/`quite` neutral).

    Intensifiers are the distributional clue to polarity that real text has ("too" leans negative):
    they appear in the unlabelled corpus only, never in task sentences, so a model that knows the
    polarity of a word its labelled data never showed learnt it in pretraining.
    """

    n_nouns: int
    n_verbs: int
    n_adjs: int
    intensifier_rate: float
    mood_coherence: float = 0.8  # how often a sentence's sentiment is its document's mood
    adverb_intensifiers: bool = False  # intensifiers before adverbs too (`too badly`, `truly kindly`)


#: "standard": the original language (thousands of word forms, no intensifiers); "compact": a lexicon of
#: a few hundred forms, each seen often enough in a 400k-word corpus for a tiny model to learn it, and
#: intensifiers on 40% of adjectives in the corpus; "demo": the smallest lexicon (40 nouns, 20 verbs, 24
#: adjectives: about 250 forms), intensifiers on 80% of adjectives and adverbs, sentences that keep their
#: document's mood 95% of the time: the distributional clues to a word's polarity are dense enough that
#: bert-tiny starts to learn them within the demo's 2M pretraining tokens (docs/data.md has the design runs).
PROFILES = {"standard": Profile(1200, 500, 600, 0.0), "compact": Profile(120, 60, 60, 0.4),
            "demo": Profile(40, 20, 24, 0.8, mood_coherence=0.95, adverb_intensifiers=True)}


def lexicon(language: int = 0, profile: str = "standard") -> "Lexicon":
    """The lexicon of `language` in `profile` (cached)."""
    if profile not in PROFILES:
        raise DataError(f"unknown synthetic language profile {profile!r}; choose from {', '.join(PROFILES)}")
    p = PROFILES[profile]
    return build_lexicon(language, p.n_nouns, p.n_verbs, p.n_adjs)


@dataclass(frozen=True)
class Lexicon:
    """Every word form, and where each inflectional paradigm starts in `words`."""

    words: np.ndarray  # object array of str
    noun_base: int
    n_nouns: int
    noun_gender: np.ndarray
    verb_base: int
    n_verbs: int
    adj_base: int
    n_adjs: int
    adj_polarity: np.ndarray  # 0 negative, 1 positive, 2 neutral
    adv_base: int
    det_sg_base: int
    det_pl_base: int
    prep_base: int
    pronoun_ids: dict
    marker_first_base: int
    marker_middle_base: int
    marker_last_base: int
    word_ids: dict  # single function words: "that", "never", "and", ",", "."


def _stems(rng: np.random.Generator, n: int, taken: set, syllables=(1, 2, 3), weights=(0.25, 0.5, 0.25)) -> list[str]:
    out: list[str] = []
    while len(out) < n:
        k = 4 * (n - len(out)) + 16
        counts = rng.choice(syllables, size=k, p=weights)
        onset = rng.integers(0, len(_CONSONANTS), size=(k, 3))
        vowel = rng.integers(0, len(_VOWELS), size=(k, 3))
        coda = rng.integers(0, len(_CONSONANTS) + 4, size=k)  # 4/18: open final syllable
        for i in range(k):
            s = "".join(_CONSONANTS[onset[i, j]] + _VOWELS[vowel[i, j]] for j in range(counts[i]))
            if coda[i] < len(_CONSONANTS):
                s += _CONSONANTS[coda[i]]
            if s not in taken and len(s) > 1:
                taken.add(s)
                out.append(s)
                if len(out) == n:
                    break
    return out


def _plural(noun: str) -> str:
    return noun + ("es" if noun[-1] in "szx" or noun.endswith(("ch", "sh")) else "s")


@lru_cache(maxsize=4)
def build_lexicon(language: int = 0, n_nouns: int = 1200, n_verbs: int = 500, n_adjs: int = 600) -> Lexicon:
    """The word forms of language `language` (a seed); cached, since every generator call needs it."""
    rng = np.random.default_rng([language, 0x1E61C0])
    function_words = set(_DET_SINGULAR + _DET_PLURAL + _PREPOSITIONS + list(_PRONOUNS.values()) + _FIRST_MARKERS
                         + _MIDDLE_MARKERS + _LAST_MARKERS + ["that", "never", "and", "some", "a"])
    taken = set(function_words)
    verb_stems = _stems(rng, n_verbs, taken)
    # a quarter of verbs carry a derivational prefix on another verb's stem (re-, un-, ...)
    prefixed = rng.random(n_verbs) < 0.25
    for i in np.flatnonzero(prefixed):
        candidate = _VERB_PREFIXES[rng.integers(len(_VERB_PREFIXES))] + verb_stems[rng.integers(n_verbs)]
        if candidate not in taken:
            taken.add(candidate)
            verb_stems[i] = candidate
    noun_stems = _stems(rng, n_nouns, taken)
    derived = rng.random(n_nouns) < 0.35  # nouns derived from verbs: -ment, -ion, ...
    for i in np.flatnonzero(derived):
        candidate = verb_stems[rng.integers(n_verbs)] + _NOUN_SUFFIXES[rng.integers(len(_NOUN_SUFFIXES))]
        if candidate not in taken:
            taken.add(candidate)
            noun_stems[i] = candidate
    adj_stems = _stems(rng, n_adjs, taken, syllables=(1, 2), weights=(0.5, 0.5))
    derived = rng.random(n_adjs) < 0.4  # adjectives derived from nouns: -ful, -ous, ...
    for i in np.flatnonzero(derived):
        candidate = noun_stems[rng.integers(n_nouns)] + _ADJ_SUFFIXES[rng.integers(len(_ADJ_SUFFIXES))]
        if candidate not in taken:
            taken.add(candidate)
            adj_stems[i] = candidate

    words: list[str] = []
    noun_base = len(words)
    for stem in noun_stems:  # id = base + 2 * lexeme + number
        words += [stem, _plural(stem)]
    verb_base = len(words)
    for stem in verb_stems:  # id = base + 2 * lexeme + number (singular takes -s)
        words += [_plural(stem), stem]
    adj_base = len(words)
    for stem in adj_stems:  # id = base + 4 * lexeme + 2 * gender + number
        words += [stem + "o", stem + "a", stem + "os", stem + "as"]
    adv_base = len(words)
    words += [stem + "ly" for stem in adj_stems]
    det_sg_base = len(words)
    words += _DET_SINGULAR
    det_pl_base = len(words)
    words += _DET_PLURAL
    prep_base = len(words)
    words += _PREPOSITIONS
    pronoun_ids = {}
    for key, pronoun in _PRONOUNS.items():
        pronoun_ids[key] = len(words)
        words.append(pronoun)
    marker_first_base = len(words)
    words += _FIRST_MARKERS
    marker_middle_base = len(words)
    words += _MIDDLE_MARKERS
    marker_last_base = len(words)
    words += _LAST_MARKERS
    word_ids = {}
    for w in ["that", "never", "and", ",", ".", *[w for group in _INTENSIFIERS for w in group]]:
        word_ids[w] = len(words)
        words.append(w)
    polarity = rng.permutation(np.arange(n_adjs) % 3)
    return Lexicon(
        words=np.array(words, dtype=object), noun_base=noun_base, n_nouns=n_nouns,
        noun_gender=rng.integers(0, 2, size=n_nouns), verb_base=verb_base, n_verbs=n_verbs, adj_base=adj_base,
        n_adjs=n_adjs, adj_polarity=polarity, adv_base=adv_base, det_sg_base=det_sg_base, det_pl_base=det_pl_base,
        prep_base=prep_base, pronoun_ids=pronoun_ids, marker_first_base=marker_first_base,
        marker_middle_base=marker_middle_base, marker_last_base=marker_last_base, word_ids=word_ids,
    )


def _zipf_cdf(n: int, exponent: float = 1.07, shift: float = 2.7) -> np.ndarray:
    weights = 1.0 / (np.arange(n) + shift) ** exponent
    cdf = np.cumsum(weights)
    return cdf / cdf[-1]


def _zipf(rng: np.random.Generator, n: int, size) -> np.ndarray:
    """Zipfian draws in [0, n): rank r has probability proportional to 1 / (r + 2.7) ** 1.07."""
    return np.minimum(np.searchsorted(_zipf_cdf(n), rng.random(size), side="right"), n - 1)


@lru_cache(maxsize=8)
def _polarity_groups(language: int, profile: str = "standard") -> list[np.ndarray]:
    lex = lexicon(language, profile)
    return [np.flatnonzero(lex.adj_polarity == g) for g in range(3)]


def _adjectives(rng, language: int, polarity: np.ndarray, side: int | None = None,
                profile: str = "standard") -> np.ndarray:
    """An adjective lexeme of the given polarity (0 negative, 1 positive, 2 neutral) per row, Zipfian.

    `side` 0 or 1 draws the polar ones only from that half of their group (`heldout_split`); neutral
    adjectives carry no label and come from the whole group.
    """
    groups = _polarity_groups(language, profile)
    out = np.empty(len(polarity), dtype=np.int64)
    for g, members in enumerate(groups):
        if side is not None and g != 2:
            members = members[side::2]
        rows = np.flatnonzero(polarity == g)
        out[rows] = members[_zipf(rng, len(members), len(rows))]
    return out


def _nouns(rng, n_nouns: int, size, side: int | None = None) -> np.ndarray:
    """Noun lexemes, Zipfian (the lexeme index is the frequency rank); `side` keeps one parity of rank."""
    if side is None:
        return _zipf(rng, n_nouns, size)
    return side + 2 * _zipf(rng, (n_nouns - side + 1) // 2, size)


def heldout_split(language: int = 0, profile: str = "standard") -> dict[str, list[np.ndarray]]:
    """The two halves of the label-carrying lexemes: polar adjectives (and their adverbs) and nouns.

    Side 0 may appear in a held-out task's labelled training split, side 1 only in its dev and test
    splits. Each half takes every other frequency rank, so both hold frequent and rare words alike.
    The unlabelled corpus uses both halves: what a model knows of side 1 it learnt from the corpus.
    Returns lexeme ids per side: {"adjectives": [side 0, side 1], "nouns": [side 0, side 1]}.
    """
    lex = lexicon(language, profile)
    groups = _polarity_groups(language, profile)
    adjectives = [np.sort(np.concatenate([groups[0][side::2], groups[1][side::2]])) for side in (0, 1)]
    nouns = [np.arange(side, lex.n_nouns, 2) for side in (0, 1)]
    return {"adjectives": adjectives, "nouns": nouns}


@dataclass
class Sample:
    """Sentences as slot matrices plus their latent variables (one row per sentence)."""

    lexemes: np.ndarray   # [S, slots] lexeme / choice index per slot
    present: np.ndarray   # [S, slots] bool
    gender: np.ndarray    # [S, slots] agreement gender used to inflect the slot
    number: np.ndarray    # [S, slots] agreement number used to inflect the slot
    doc: np.ndarray       # [S] document index
    position: np.ndarray  # [S] sentence index within its document
    doc_length: np.ndarray  # [S] sentences in the document
    sentiment: np.ndarray  # [S] 0 negative, 1 positive
    negated: np.ndarray   # [S] bool
    depth: np.ndarray     # [S] relative-clause depth 0..2
    subject_kind: np.ndarray  # [S] 0 protagonist introduced, 1 the protagonist, 2 pronoun, 3 other noun
    mood: np.ndarray      # [D] 0/1
    protagonist: np.ndarray  # [D] noun lexeme
    protagonist_number: np.ndarray  # [D]
    profile: str = "standard"


def sample_documents(rng: np.random.Generator, n_docs: int, language: int = 0, min_sentences: int = 3,
                     max_sentences: int = 8, side: int | None = None, profile: str = "standard",
                     intensifiers: bool = True) -> Sample:
    """Draw `n_docs` documents; every choice is a vectorised draw over all sentences at once.

    `side` (0 or 1) draws every noun and every polar adjective and adverb from that half of the lexicon
    (`heldout_split`), for the labelled splits of the held-out tasks; None (the corpus) uses all words.
    `intensifiers = False` leaves out the profile's polarity intensifiers (task sentences never have them).
    """
    lex = lexicon(language, profile)
    n_slots = len(SLOTS)
    doc_length = rng.integers(min_sentences, max_sentences + 1, size=n_docs)
    n = int(doc_length.sum())
    doc = np.repeat(np.arange(n_docs), doc_length)
    first_of_doc = np.cumsum(doc_length) - doc_length
    position = np.arange(n) - first_of_doc[doc]
    length = doc_length[doc]
    mood = rng.integers(0, 2, size=n_docs)
    protagonist = _nouns(rng, lex.n_nouns, n_docs, side)
    protagonist_number = (rng.random(n_docs) < 0.3).astype(np.int64)

    lexemes = np.zeros((n, n_slots), dtype=np.int64)
    present = np.zeros((n, n_slots), dtype=bool)
    gender = np.zeros((n, n_slots), dtype=np.int64)
    number = np.zeros((n, n_slots), dtype=np.int64)
    S = SLOT

    def noun_phrase(det, adj, noun, rows_number, noun_lexeme, adj_lexeme=None, adj_on=None, det_choice=None):
        g = lex.noun_gender[noun_lexeme]
        lexemes[:, noun] = noun_lexeme
        number[:, noun] = rows_number
        gender[:, noun] = g
        lexemes[:, det] = det_choice if det_choice is not None else rng.integers(0, len(_DET_SINGULAR), size=n)
        number[:, det] = rows_number
        if adj is not None:
            lexemes[:, adj] = adj_lexeme
            number[:, adj] = rows_number
            gender[:, adj] = g
            present[:, adj] = adj_on

    sentiment = np.where(rng.random(n) < PROFILES[profile].mood_coherence, mood[doc], 1 - mood[doc])
    negated = rng.random(n) < 0.12

    def polar(p_polar):
        """Per row: the sentence's sentiment with probability p_polar, else neutral (2)."""
        return np.where(rng.random(n) < p_polar, sentiment, 2)

    # subject: the protagonist (introduced first), a pronoun, or another noun phrase
    kind_draw = rng.random(n)
    subject_kind = np.where(position == 0, 0, np.where(kind_draw < 0.35, 1, np.where(kind_draw < 0.7, 2, 3)))
    other_noun = _nouns(rng, lex.n_nouns, n, side)
    other_number = (rng.random(n) < 0.35).astype(np.int64)
    subj_noun = np.where(subject_kind == 3, other_noun, protagonist[doc])
    subj_number = np.where(subject_kind == 3, other_number, protagonist_number[doc])
    subj_adj_polarity = polar(0.6)
    noun_phrase(S["subj_det"], S["subj_adj"], S["subj_noun"], subj_number, subj_noun,
                _adjectives(rng, language, subj_adj_polarity, side, profile), rng.random(n) < 0.35)
    is_pronoun = subject_kind == 2
    present[:, S["pronoun"]] = is_pronoun
    gender[:, S["pronoun"]] = lex.noun_gender[subj_noun]
    number[:, S["pronoun"]] = subj_number
    present[:, [S["subj_det"], S["subj_noun"]]] = ~is_pronoun[:, None]
    present[:, S["subj_adj"]] &= ~is_pronoun
    # determiners: -1 marks the indefinite ("a"/"some") of an introduction, -2 the definite "the"
    det = lexemes[:, S["subj_det"]]
    lexemes[:, S["subj_det"]] = np.where(subject_kind == 0, -1, np.where(subject_kind == 1, -2, det))

    # discourse markers follow the story's order
    present[:, S["marker"]] = np.where(position == 0, rng.random(n) < 0.5,
                                       np.where(position == length - 1, rng.random(n) < 0.8, rng.random(n) < 0.5))
    lexemes[:, S["marker"]] = rng.integers(0, 6, size=n)
    present[:, S["marker_comma"]] = present[:, S["marker"]]

    # relative clauses on noun subjects: depth 1 (35%) or 2 (10%); the relative noun is an attractor
    depth_draw = rng.random(n)
    depth = np.where(is_pronoun, 0, np.where(depth_draw < 0.10, 2, np.where(depth_draw < 0.45, 1, 0)))
    rel_number = np.where(rng.random(n) < 0.6, 1 - subj_number, subj_number)
    noun_phrase(S["rel_det"], S["rel_adj"], S["rel_noun"], rel_number, _nouns(rng, lex.n_nouns, n, side),
                _adjectives(rng, language, polar(0.3), side, profile), rng.random(n) < 0.2)
    rel2_number = (rng.random(n) < 0.4).astype(np.int64)
    noun_phrase(S["rel2_det"], None, S["rel2_noun"], rel2_number, _nouns(rng, lex.n_nouns, n, side))
    for slot in ("rel", "rel_det", "rel_noun", "rel_verb"):
        present[:, S[slot]] = depth >= 1
    present[:, S["rel_adj"]] &= depth >= 1
    for slot in ("rel2", "rel2_det", "rel2_noun", "rel2_verb"):
        present[:, S[slot]] = depth >= 2
    lexemes[:, S["rel_verb"]] = _zipf(rng, lex.n_verbs, n)
    number[:, S["rel_verb"]] = rel_number
    lexemes[:, S["rel2_verb"]] = _zipf(rng, lex.n_verbs, n)
    number[:, S["rel2_verb"]] = rel2_number

    # the verb phrase: (never) verb object (adverb) (preposition phrase) (and verb object)
    present[:, S["neg"]] = negated
    present[:, S["verb"]] = True
    lexemes[:, S["verb"]] = _zipf(rng, lex.n_verbs, n)
    number[:, S["verb"]] = subj_number
    has_object = rng.random(n) < 0.8
    obj_polarity = polar(0.6)
    noun_phrase(S["obj_det"], S["obj_adj"], S["obj_noun"], (rng.random(n) < 0.35).astype(np.int64),
                _nouns(rng, lex.n_nouns, n, side), _adjectives(rng, language, obj_polarity, side, profile),
                has_object & (rng.random(n) < 0.4))
    present[:, [S["obj_det"], S["obj_noun"]]] = has_object[:, None]
    has_pp = rng.random(n) < 0.35
    noun_phrase(S["pp_det"], S["pp_adj"], S["pp_noun"], (rng.random(n) < 0.35).astype(np.int64),
                _nouns(rng, lex.n_nouns, n, side), _adjectives(rng, language, polar(0.5), side, profile), has_pp & (rng.random(n) < 0.3))
    present[:, [S["prep"], S["pp_det"], S["pp_noun"]]] = has_pp[:, None]
    lexemes[:, S["prep"]] = _zipf(rng, len(_PREPOSITIONS), n)
    has_conj = rng.random(n) < 0.2
    present[:, [S["conj"], S["verb2"], S["obj2_det"], S["obj2_noun"]]] = has_conj[:, None]
    lexemes[:, S["verb2"]] = _zipf(rng, lex.n_verbs, n)
    number[:, S["verb2"]] = subj_number
    noun_phrase(S["obj2_det"], None, S["obj2_noun"], (rng.random(n) < 0.35).astype(np.int64),
                _nouns(rng, lex.n_nouns, n, side))

    # every sentence carries its sentiment on at least one word: the adverb, whose surface polarity
    # `never` flips; other adjectives were coloured above
    adjective_slots = [S["subj_adj"], S["obj_adj"], S["pp_adj"]]
    polar_adjective = np.zeros(n, dtype=bool)
    for slot in adjective_slots:
        polar_adjective |= present[:, slot] & (lex.adj_polarity[lexemes[:, slot]] != 2)
    has_adverb = (rng.random(n) < 0.5) | ~polar_adjective | negated
    adverb_polarity = np.where(negated, 1 - sentiment, np.where(rng.random(n) < 0.7, sentiment, 2))
    adverb_polarity = np.where(~polar_adjective & ~negated, sentiment, adverb_polarity)
    present[:, S["adv"]] = has_adverb
    lexemes[:, S["adv"]] = _adjectives(rng, language, adverb_polarity, side, profile)
    present[:, S["end"]] = True

    rate = PROFILES[profile].intensifier_rate if intensifiers else 0.0
    if rate > 0:  # drawn last, so a profile without intensifiers draws exactly what it always drew
        for slot in _INTENSIFIED_SLOTS if PROFILES[profile].adverb_intensifiers else _ADJECTIVE_SLOTS:
            adjective = S[slot]
            intensifier = adjective - 1
            present[:, intensifier] = present[:, adjective] & (rng.random(n) < rate)
            polarity = lex.adj_polarity[lexemes[:, adjective]]
            lexemes[:, intensifier] = 2 * polarity + rng.integers(0, 2, size=n)

    return Sample(lexemes=lexemes, present=present, gender=gender, number=number, doc=doc, position=position,
                  doc_length=length, sentiment=sentiment, negated=negated, depth=depth, subject_kind=subject_kind,
                  mood=mood, protagonist=protagonist, protagonist_number=protagonist_number, profile=profile)


def word_ids(sample: Sample, language: int = 0) -> np.ndarray:
    """[S, slots] ids into the lexicon's `words` (only meaningful where `present`)."""
    lex = lexicon(language, sample.profile)
    S = SLOT
    lx, g, nb = sample.lexemes, sample.gender, sample.number
    ids = np.zeros_like(lx)
    for slot in ("subj_noun", "rel_noun", "rel2_noun", "obj_noun", "pp_noun", "obj2_noun"):
        ids[:, S[slot]] = lex.noun_base + 2 * lx[:, S[slot]] + nb[:, S[slot]]
    for slot in ("verb", "rel_verb", "rel2_verb", "verb2"):
        ids[:, S[slot]] = lex.verb_base + 2 * lx[:, S[slot]] + nb[:, S[slot]]
    for slot in ("subj_adj", "rel_adj", "obj_adj", "pp_adj"):
        ids[:, S[slot]] = lex.adj_base + 4 * lx[:, S[slot]] + 2 * g[:, S[slot]] + nb[:, S[slot]]
    ids[:, S["adv"]] = lex.adv_base + lx[:, S["adv"]]
    for slot in ("subj_det", "rel_det", "rel2_det", "obj_det", "pp_det", "obj2_det"):
        choice, plural = lx[:, S[slot]], nb[:, S[slot]]
        base = np.where(plural == 1, lex.det_pl_base, lex.det_sg_base)
        # -1: indefinite introduction ("a" is singular index 1, "some" plural index 1); -2: "the" (index 0)
        index = np.where(choice == -1, 1, np.where(choice == -2, 0, choice))
        ids[:, S[slot]] = base + index
    ids[:, S["prep"]] = lex.prep_base + lx[:, S["prep"]]
    pronouns = np.array([[lex.pronoun_ids[(gg, nn)] for nn in (0, 1)] for gg in (0, 1)])
    ids[:, S["pronoun"]] = pronouns[g[:, S["pronoun"]], nb[:, S["pronoun"]]]
    first = lex.marker_first_base + lx[:, S["marker"]] % len(_FIRST_MARKERS)
    middle = lex.marker_middle_base + lx[:, S["marker"]] % len(_MIDDLE_MARKERS)
    last = lex.marker_last_base + lx[:, S["marker"]] % len(_LAST_MARKERS)
    ids[:, S["marker"]] = np.where(sample.position == 0, first,
                                   np.where(sample.position == sample.doc_length - 1, last, middle))
    ids[:, S["marker_comma"]] = lex.word_ids[","]
    ids[:, S["rel"]] = lex.word_ids["that"]
    ids[:, S["rel2"]] = lex.word_ids["that"]
    ids[:, S["neg"]] = lex.word_ids["never"]
    ids[:, S["conj"]] = lex.word_ids["and"]
    ids[:, S["end"]] = lex.word_ids["."]
    intensifier_ids = np.array([lex.word_ids[w] for group in _INTENSIFIERS for w in group])
    for slot in _INTENSIFIED_SLOTS:
        ids[:, S[slot] - 1] = intensifier_ids[lx[:, S[slot] - 1]]
    return ids


def render(sample: Sample, language: int = 0, rows: np.ndarray | None = None) -> list[str]:
    """The sentences as strings (punctuation attached to the previous word), in one vectorised pass."""
    lex = lexicon(language, sample.profile)
    ids = word_ids(sample, language)
    present = sample.present
    if rows is not None:
        ids, present = ids[rows], present[rows]
    flat = ids[present]
    if len(flat) == 0:
        return []
    counts = present.sum(axis=1)
    words = lex.words[flat]
    punct = np.isin(flat, [lex.word_ids[","], lex.word_ids["."]])
    seps = np.full(len(flat), " ", dtype=object)
    seps[:-1][punct[1:]] = ""
    ends = np.cumsum(counts) - 1
    seps[ends] = "\n"
    pieces = np.empty(2 * len(flat), dtype=object)
    pieces[0::2] = words
    pieces[1::2] = seps
    return "".join(pieces.tolist()).split("\n")[:-1]


def _class_strings(sample: Sample) -> list[str]:
    codes = np.array(CLASS_CODES, dtype=object)[SLOT_CLASS]
    flat = np.broadcast_to(codes, sample.present.shape)[sample.present]
    counts = sample.present.sum(axis=1)
    seps = np.full(len(flat), " ", dtype=object)
    seps[np.cumsum(counts) - 1] = "\n"
    pieces = np.empty(2 * len(flat), dtype=object)
    pieces[0::2] = flat
    pieces[1::2] = seps
    return "".join(pieces.tolist()).split("\n")[:-1]


def _sample_tokens(rng, tokens: int, language: int, profile: str = "standard") -> Sample:
    """Documents until about `tokens` words (words and punctuation marks) are reached."""
    n_docs = max(1, int(tokens / 55) + 1)  # documents average about 63 words: enough, then trimmed
    sample = sample_documents(rng, n_docs, language, profile=profile)
    per_doc = np.bincount(sample.doc, weights=sample.present.sum(axis=1), minlength=n_docs)
    keep_docs = int(np.searchsorted(np.cumsum(per_doc), tokens) + 1)
    return _take_docs(sample, min(keep_docs, n_docs))


def _take_docs(sample: Sample, n_docs: int) -> Sample:
    rows = sample.doc < n_docs
    return Sample(lexemes=sample.lexemes[rows], present=sample.present[rows], gender=sample.gender[rows],
                  number=sample.number[rows], doc=sample.doc[rows], position=sample.position[rows],
                  doc_length=sample.doc_length[rows], sentiment=sample.sentiment[rows],
                  negated=sample.negated[rows], depth=sample.depth[rows], subject_kind=sample.subject_kind[rows],
                  mood=sample.mood[:n_docs], protagonist=sample.protagonist[:n_docs],
                  protagonist_number=sample.protagonist_number[:n_docs], profile=sample.profile)


CORPUS_KIND = "synthetic corpus"
TASKS_KIND = "synthetic task set"


def _existing_run(out_dir: Path, wanted: dict, overwrite: bool, what: str) -> bool:
    """True when `out_dir` already holds this exact output (a no-op re-run); an error when it holds another.
    Anything but a re-run goes through the one output guard, `claim_out_dir`."""
    meta_path = out_dir / "meta.json"
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8")) if meta_path.is_file() else None
    except (json.JSONDecodeError, UnicodeDecodeError, OSError):
        meta = None
    if meta is not None and all(meta.get(k) == v for k, v in wanted.items()) and not overwrite \
            and meta.get("generator") == "maskbench.data.synth":
        return True
    if meta is not None and not overwrite and marked_kind(out_dir) == what:
        raise DataError(f"{out_dir} already holds a different {what} "
                        f"({', '.join(f'{k}={meta.get(k)}' for k in wanted if meta.get(k) != wanted[k])}); "
                        f"choose another --out or pass --overwrite")
    claim_out_dir(out_dir, what, overwrite)
    return False


def generate_corpus(out_dir: str | Path, tokens: int = 2_000_000, seed: int = 0, language: int = 0,
                    overwrite: bool = False, profile: str = "standard") -> Path:
    """Write `corpus.txt` (one sentence per line, blank line between documents), `labels.jsonl` (one line
    per document: mood, protagonist, and per sentence its sentiment, negation, clause depth, subject kind
    and word classes as codes of `CLASS_CODES`) and `meta.json` into `out_dir`; return corpus.txt's path.

    About `tokens` words (punctuation marks count as words; whole documents, so slightly more). Re-running
    with the same arguments on the same folder is a no-op; a folder holding anything else is an error
    unless `overwrite`. `profile` picks the variant of the language (`PROFILES`).
    """
    if tokens < 1:
        raise DataError(f"--tokens must be at least 1, got {tokens}")
    out_dir = Path(out_dir)
    lex = lexicon(language, profile)
    wanted = {"generator_version": GENERATOR_VERSION, "seed": seed, "language": language, "requested_tokens": tokens,
              **_profile_key(profile)}
    if _existing_run(out_dir, wanted, overwrite, CORPUS_KIND):
        return out_dir / "corpus.txt"
    rng = np.random.default_rng([seed, language, 0xC0])
    sample = _sample_tokens(rng, tokens, language, profile)
    sentences = render(sample, language)
    classes = _class_strings(sample)
    doc_first = np.flatnonzero(sample.position == 0)
    doc_end = np.append(doc_first[1:], len(sentences))
    text_parts = []
    label_lines = []
    for d, (a, b) in enumerate(zip(doc_first.tolist(), doc_end.tolist())):
        text_parts.append("\n".join(sentences[a:b]))
        label_lines.append(json.dumps({
            "doc": d,
            "mood": SENTIMENTS[sample.mood[d]],
            "protagonist": {"noun": lex.words[lex.noun_base + 2 * sample.protagonist[d]],
                            "gender": GENDERS[lex.noun_gender[sample.protagonist[d]]],
                            "number": NUMBERS[sample.protagonist_number[d]]},
            "sentiment": sample.sentiment[a:b].tolist(),
            "negated": sample.negated[a:b].astype(int).tolist(),
            "depth": sample.depth[a:b].tolist(),
            "subject": sample.subject_kind[a:b].tolist(),
            "classes": classes[a:b],
        }, separators=(",", ":")))
    n_words = int(sample.present.sum())
    meta = {
        "generator": "maskbench.data.synth", "kind": "corpus", "generator_version": GENERATOR_VERSION, "seed": seed,
        "language": language, **_profile_key(profile), "requested_tokens": tokens, "words": n_words, "documents": len(doc_first),
        "sentences": len(sentences), "vocabulary": len(lex.words),
        "class_codes": dict(zip(CLASS_CODES, CLASS_NAMES)),
        "labels": {"sentiment": "0 negative, 1 positive", "negated": "1 when 'never' flips the adverb",
                   "depth": "relative-clause depth 0-2",
                   "subject": "0 protagonist introduced, 1 the protagonist, 2 pronoun, 3 another noun"},
    }
    with atomic_dir(out_dir, kind=CORPUS_KIND) as tmp:
        (tmp / "corpus.txt").write_text("\n\n".join(text_parts) + "\n", encoding="utf-8")
        (tmp / "labels.jsonl").write_text("\n".join(label_lines) + "\n", encoding="utf-8")
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return out_dir / "corpus.txt"


def _profile_key(profile: str) -> dict:
    """The profile as recorded in meta.json; the standard one is left out, so older folders still match."""
    return {} if profile == "standard" else {"profile": profile}


def word_class_sentences(n: int, seed: int = 0, language: int = 0,
                         profile: str = "standard") -> list[tuple[list[str], list[str]]]:
    """`n` sentences as (words, word classes), punctuation marks as words: data for layer-wise probes."""
    rng = np.random.default_rng([seed, language, 0xC1A55])
    lex = lexicon(language, profile)
    sample = sample_documents(rng, max(1, n // 3 + 1), language, profile=profile)
    rows = np.arange(n)  # documents have >= 3 sentences, so n // 3 + 1 of them hold n sentences
    ids = word_ids(sample, language)
    out = []
    for r in rows.tolist():
        mask = sample.present[r]
        out.append(([str(w) for w in lex.words[ids[r][mask]]], [CLASS_NAMES[c] for c in SLOT_CLASS[mask]]))
    return out


# ---------------------------------------------------------------------------------------------------------
# GLUE-format tasks whose answers depend on the latent structure

TASKS = ("synth-sentiment", "synth-agreement", "synth-order", "synth-sentiment-heldout", "synth-agreement-heldout")
#: Tasks whose dev and test sentences rest on words the labelled training split never shows (`heldout_split`).
HELDOUT_TASKS = ("synth-sentiment-heldout", "synth-agreement-heldout")


def _violate_agreement(rng, sample: Sample, language: int) -> np.ndarray:
    """Break agreement in half the sentences; returns the label (1 = acceptable, 0 = violated).

    A violation flips the main verb's number (its subject is often separated from it by a relative
    clause with an attractor) or, when the subject has an adjective, that adjective's gender.
    """
    n = len(sample.doc)
    violated = rng.random(n) < 0.5
    S = SLOT
    adjective = sample.present[:, S["subj_adj"]]
    flip_gender = violated & adjective & (rng.random(n) < 0.4)
    flip_number = violated & ~flip_gender
    sample.number[:, S["verb"]] = np.where(flip_number, 1 - sample.number[:, S["verb"]], sample.number[:, S["verb"]])
    sample.gender[:, S["subj_adj"]] = np.where(flip_gender, 1 - sample.gender[:, S["subj_adj"]],
                                               sample.gender[:, S["subj_adj"]])
    return (~violated).astype(np.int64)


def _violate_gender(rng, sample: Sample) -> tuple[np.ndarray, np.ndarray]:
    """Flip the gender ending of one adjective in half the sentences that have one.

    Returns (rows that have an adjective, label per sentence: 1 = agreement kept, 0 = violated). Number
    agreement is left alone: its `-s` is visible on the noun, gender is not, so only a model that knows
    the noun's gender (from the adjectives and pronouns it meets in the corpus) can judge a new noun.
    """
    slots = np.array([SLOT[name] for name in _ADJECTIVE_SLOTS])
    present = sample.present[:, slots]
    eligible = present.any(axis=1)
    # one present adjective per row, uniformly: the argmax of random keys over the present slots
    choice = slots[np.argmax(np.where(present, rng.random(present.shape), -1.0), axis=1)]
    violated = eligible & (rng.random(len(eligible)) < 0.5)
    rows = np.flatnonzero(violated)
    sample.gender[rows, choice[rows]] = 1 - sample.gender[rows, choice[rows]]
    return np.flatnonzero(eligible), (~violated).astype(np.int64)


def _tsv_cell(text: str) -> str:
    return text.replace("\t", " ").replace("\n", " ")


def _write_split(path: Path, header: list[str], rows: list[list]) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8", newline="\n") as f:
            f.write("\t".join(header) + "\n")
            for row in rows:
                f.write("\t".join(_tsv_cell(str(c)) for c in row) + "\n")


def _write_task(folder: Path, name: str, description: str, text_columns: list[str], label_names: list[str],
                metrics: list[str], splits: dict[str, tuple[list[list[str]], list[int]]]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for split, (texts, labels) in splits.items():
        if split == "test":
            header = ["index"] + text_columns
            rows = [[i] + t for i, t in enumerate(texts)]
        else:
            header = text_columns + ["label"]
            rows = [t + [label] for t, label in zip(texts, labels)]
        _write_split(folder / f"{split}.tsv", header, rows)
    spec = {
        "name": name, "description": description, "format": "tsv", "header": True,
        "text_a": text_columns[0], "text_b": text_columns[1] if len(text_columns) > 1 else None,
        "label": "label", "label_names": label_names, "metrics": metrics, "index": "index",
        "splits": {s: f"{s}.tsv" for s in splits},
        "sizes": {s: len(texts) for s, (texts, _) in splits.items()},
    }
    (folder / "task.json").write_text(json.dumps(spec, indent=2) + "\n", encoding="utf-8")


def _balanced(rng, labels: np.ndarray, count: int) -> np.ndarray:
    """Row indices with equal counts per label (as far as possible), shuffled."""
    per = count // 2
    picks = [rng.permutation(np.flatnonzero(labels == v))[: per + (count % 2 if v == 1 else 0)] for v in (0, 1)]
    return rng.permutation(np.concatenate(picks))


def write_tasks(out_dir: str | Path, seed: int = 0, language: int = 0, train: int = 2000, dev: int = 500,
                test: int = 500, tasks: tuple[str, ...] = TASKS, overwrite: bool = False,
                profile: str = "standard") -> dict[str, Path]:
    """Write GLUE-format folders (`train.tsv`, `dev.tsv`, `test.tsv` unlabeled with an index, `task.json`).

    - `synth-sentiment`: one sentence -> its latent sentiment (negative/positive); needs the polarity of
      adjectives and adverbs, and `never` flips an adverb;
    - `synth-agreement`: one sentence -> acceptable (1) or an agreement violation (0), CoLA-style (MCC);
    - `synth-order`: two sentences -> 1 when B is the sentence right after A in its document, 0 when B
      comes right before A or from another document;
    - `synth-sentiment-heldout`: as `synth-sentiment`, but the polar adjectives and adverbs of dev and
      test sentences never occur in train (`heldout_split`): their polarity is known only from the corpus;
    - `synth-agreement-heldout`: one sentence with an adjective -> 1 when every adjective agrees in gender
      with its noun, 0 when one does not; the nouns of dev and test never occur in train, and a noun's
      gender shows only in the corpus (its adjectives, the pronouns that refer to it).
    The three first tasks can be learnt from their labelled examples alone; the held-out ones need what
    pretraining on the corpus taught (docs/data.md). Returns {task name: folder}. Each split is drawn
    from its own documents.
    """
    for name in tasks:
        if name not in TASKS:
            raise DataError(f"unknown synthetic task {name!r}; choose from {', '.join(TASKS)}")
    out_dir = Path(out_dir)
    sizes = {"train": train, "dev": dev, "test": test}
    for split, size in sizes.items():
        if size < 2:
            raise DataError(f"--{split} must be at least 2 examples, got {size}")
    tasks = tuple(name for name in TASKS if name in tasks)
    lexicon(language, profile)  # an unknown profile is an error before anything is written
    wanted = {"kind": "tasks", "generator_version": GENERATOR_VERSION, "seed": seed, "language": language,
              **_profile_key(profile), "sizes": sizes, "tasks": list(tasks)}
    if _existing_run(out_dir, wanted, overwrite, TASKS_KIND):
        return {name: out_dir / name for name in tasks}
    folders = {}
    with atomic_dir(out_dir, kind=TASKS_KIND) as tmp:
        meta = {"generator": "maskbench.data.synth", **wanted}
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        for t, name in enumerate(TASKS):
            if name not in tasks:
                continue
            splits = {}
            for s, (split, size) in enumerate(sizes.items()):
                rng = np.random.default_rng([seed, language, 0x7A5C, t, s])
                if name == "synth-order":
                    texts, labels = _order_examples(rng, size, language, profile)
                else:
                    side = (0 if split == "train" else 1) if name in HELDOUT_TASKS else None
                    sample = sample_documents(rng, size // 2 + 8, language, side=side, profile=profile,
                                              intensifiers=False)
                    eligible = np.arange(len(sample.doc))
                    if name.startswith("synth-sentiment"):
                        labels_all = sample.sentiment
                    elif name == "synth-agreement":
                        labels_all = _violate_agreement(rng, sample, language)
                    else:
                        eligible, labels_all = _violate_gender(rng, sample)
                    rows = eligible[_balanced(rng, labels_all[eligible], size)]
                    if len(rows) < size:  # pragma: no cover - draws 2.5x more sentences than needed
                        raise DataError("internal: too few synthetic sentences")
                    sentences = render(sample, language, rows)
                    texts = [[s_] for s_ in sentences]
                    labels = labels_all[rows].tolist()
                splits[split] = (texts, labels)
            if name == "synth-sentiment":
                _write_task(tmp / name, name, "single sentence -> latent sentiment", ["sentence"],
                            ["negative", "positive"], ["accuracy"], splits)
            elif name == "synth-sentiment-heldout":
                _write_task(tmp / name, name, "single sentence -> latent sentiment; the polar words of dev and "
                            "test never occur in train", ["sentence"], ["negative", "positive"], ["accuracy"], splits)
            elif name == "synth-agreement-heldout":
                _write_task(tmp / name, name, "single sentence -> adjectives agree in gender with their nouns (1) "
                            "or one does not (0); the nouns of dev and test never occur in train", ["sentence"],
                            ["unacceptable", "acceptable"], ["accuracy"], splits)
            elif name == "synth-agreement":
                _write_task(tmp / name, name, "single sentence -> grammatical (1) or agreement violated (0)",
                            ["sentence"], ["unacceptable", "acceptable"], ["mcc", "accuracy"], splits)
            else:
                _write_task(tmp / name, name, "sentence pair -> B directly follows A in its document",
                            ["sentence1", "sentence2"], ["not_next", "next"], ["accuracy"], splits)
            folders[name] = out_dir / name
    return folders


def _order_examples(rng, size: int, language: int, profile: str = "standard") -> tuple[list[list[str]], list[int]]:
    """Half true (A, next B); a quarter swapped (B, A); a quarter A with a sentence of another document."""
    sample = sample_documents(rng, size // 2 + 8, language, profile=profile, intensifiers=False)
    sentences = np.array(render(sample, language), dtype=object)
    n = len(sentences)
    has_next = np.flatnonzero(sample.position < sample.doc_length - 1)
    anchors = has_next[rng.permutation(len(has_next))[:size]]
    if len(anchors) < size:  # pragma: no cover - documents have >= 3 sentences
        raise DataError("internal: too few synthetic sentence pairs")
    kind = rng.permutation(np.arange(size) % 4)  # 0,1: next; 2: swapped; 3: other document
    n_docs = len(sample.mood)
    other_doc = (sample.doc[anchors] + 1 + rng.integers(0, n_docs - 1, size=size)) % n_docs
    doc_first = np.flatnonzero(sample.position == 0)
    doc_sizes = np.diff(np.append(doc_first, n))
    other = doc_first[other_doc] + np.floor(rng.random(size) * doc_sizes[other_doc]).astype(np.int64)
    first = np.where(kind == 2, anchors + 1, anchors)
    second = np.where(kind == 2, anchors, np.where(kind == 3, other, anchors + 1))
    texts = [[a, b] for a, b in zip(sentences[first].tolist(), sentences[second].tolist())]
    labels = (kind <= 1).astype(np.int64).tolist()
    return texts, labels
