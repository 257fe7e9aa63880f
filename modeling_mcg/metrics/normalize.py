"""Answer normalisation shared by the exact-match accuracy and WUPS.

Generated answers come back from the tokenizer with stray case, spacing and a trailing "?" or "."; comparing them
verbatim would score formatting, not answers. `normalize_answer` is the only transformation exact match applies:

1. Unicode NFKC, then lowercase;
2. whitespace runs (spaces, tabs, newlines) collapse to one space, and the ends are stripped;
3. trailing punctuation `. , ; : ! ?` (any number, with spaces between) is removed;
4. only when asked (`strip_articles=True`): one leading "a", "an" or "the" is removed.

Inner punctuation is kept ("o'clock", "t-shirt", "2.5"), and articles are kept by default so that the scores stay
comparable with the official MCG evaluation, which compares decoded strings as they are.
"""

import re
import unicodedata

_SPACES = re.compile(r"\s+")
_TRAILING_PUNCT = re.compile(r"[\s.,;:!?]+$")
_LEADING_ARTICLE = re.compile(r"^(?:a|an|the)\s+")
# words for WUPS: letters/digits, optionally with one apostrophe part ("don't", "man's")
_WORD = re.compile(r"[0-9a-z]+(?:'[0-9a-z]+)?")

# Words dropped before WUPS, as the NExT-OE evaluation drops stop words. Our own list (function words only: articles,
# auxiliaries, pronouns, prepositions, conjunctions); the reference uses its own file, so WUPS values can differ
# slightly on answers made mostly of such words.
STOPWORDS = frozenset(
    """
    a an the
    am is are was were be been being do does did doing done have has had having will would shall should can could
    may might must
    i me my mine myself we us our ours ourselves you your yours yourself yourselves he him his himself she her hers
    herself it its itself they them their theirs themselves this that these those there here
    what which who whom whose when where why how
    and or but nor so if then than because while as until of at by for with about against between into through
    during before after above below to from up down in out on off over under again further once
    all any both each few more most other some such no not only own same too very just s t
    """.split()
)


def normalize_answer(text: str, strip_articles: bool = False) -> str:
    """Canonical form of an answer for exact match (rules in the module docstring)."""
    if not isinstance(text, str):
        raise TypeError(f"answers must be strings, got {type(text).__name__}: {text!r}")
    text = unicodedata.normalize("NFKC", text).lower()
    text = _SPACES.sub(" ", text).strip()
    text = _TRAILING_PUNCT.sub("", text)
    if strip_articles:
        text = _LEADING_ARTICLE.sub("", text)
    return text


def answer_words(text: str, drop_stopwords: bool = True) -> list[str]:
    """The words of a normalised answer, by regex (NLTK's `word_tokenize` needs `punkt`, which is not offline)."""
    words = _WORD.findall(normalize_answer(text))
    if drop_stopwords:
        words = [w for w in words if w not in STOPWORDS]
    return words
