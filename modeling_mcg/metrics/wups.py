"""WUPS (Wu-Palmer set similarity) for open-ended VideoQA, following the NExT-OE evaluation rules.

For one word pair, `wup` is 1.0 for equal strings, 0.0 when either word is unknown to WordNet, and otherwise the
Wu-Palmer similarity of the *first* synset of each word (any part of speech), multiplied by 0.1 when it is below the
threshold. For two answers, `wups` multiplies over the words of one the best match among the words of the other,
skipping words whose best match is 0 (0.0 if every word was skipped), and `wups_score` takes the minimum of both
directions. WUPS@0 never down-weights; WUPS@0.9 down-weights everything below 0.9 — the official code passes `9`
instead of `0.9` on splits without a second reference (MCG quirk Q9), which down-weights every inexact word; that is
fixed here.

Deviations from the reference, all because they need data that is not available offline:
- tokens come from a regex over the normalised answer, not NLTK's `word_tokenize` (needs `punkt`);
- each token is lemmatised with WordNet's `morphy` (noun, then verb, adjective, adverb), not with pywsd's
  part-of-speech-tagged lemmatiser, so "running" stays "running" (it is a noun in WordNet);
- the stop-word list is our own (`normalize.STOPWORDS`);
- answers whose normalised strings are equal score 1.0 even when nothing is left after stop-word removal.

WordNet comes from NLTK's own data if `nltk.download("wordnet")` was run, else from Debian's `wordnet-base` files in
`/usr/share/wordnet` (when `MCG_WORDNET_DIR` is set, only from that folder). Those are copied into a private NLTK
data folder (`$XDG_CACHE_HOME/modeling_mcg/nltk_data`, default `~/.cache/...`) because NLTK >= 3.9 refuses corpus
roots outside `nltk.data.path`, and Debian omits the `lexnames` file that NLTK's reader needs (we write it: it is
the fixed 45-line table of lexnames(5WN)). The reader skips NLTK's WordNet-3.0 sense map, which needs `index.sense`
(not in `wordnet-base`) and only serves the multilingual functions.
"""

import functools
import os
import shutil
import tempfile
import warnings

from transformers.utils import logging

from .normalize import answer_words, normalize_answer

logger = logging.get_logger(__name__)

INSTALL_HINT = (
    "install the WordNet data and NLTK: `apt-get install -y --no-install-recommends wordnet-base` (Debian/Ubuntu) "
    "and `pip install nltk==3.10.4`; or run `python -c \"import nltk; nltk.download('wordnet')\"` once with network; "
    "or set MCG_WORDNET_DIR to a folder holding WordNet 3.0's index.* and data.* files"
)

# lexnames(5WN): file number = position; the part of speech follows from the prefix.
LEXNAMES = (
    "adj.all adj.pert adv.all noun.Tops noun.act noun.animal noun.artifact noun.attribute noun.body noun.cognition "
    "noun.communication noun.event noun.feeling noun.food noun.group noun.location noun.motive noun.object "
    "noun.person noun.phenomenon noun.plant noun.possession noun.process noun.quantity noun.relation noun.shape "
    "noun.state noun.substance noun.time verb.body verb.change verb.cognition verb.communication verb.competition "
    "verb.consumption verb.contact verb.creation verb.emotion verb.motion verb.perception verb.possession "
    "verb.social verb.stative verb.weather adj.ppl"
).split()
_POS_NUMBER = {"noun": 1, "verb": 2, "adj": 3, "adv": 4}
_REQUIRED_FILES = ("index.noun", "data.noun", "index.verb", "data.verb", "index.adj", "data.adj")


def _nltk_data_root() -> str:
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(cache, "modeling_mcg", "nltk_data")


def _wordnet_sources() -> list[str]:
    """MCG_WORDNET_DIR alone when set (so a run can pin, or rule out, its WordNet); else Debian's folder."""
    return [os.environ["MCG_WORDNET_DIR"]] if os.environ.get("MCG_WORDNET_DIR") else ["/usr/share/wordnet"]


def prepare_wordnet_dir(source: str, root: str | None = None) -> str:
    """Copy a WordNet dict folder into `<root>/corpora/wordnet` (with `lexnames`) so NLTK's reader accepts it.

    Copies, not symlinks: NLTK's path check rejects links leading out of its data roots. Each file is written to a
    temporary name and renamed, so concurrent processes never read a half-written file. Returns `root`.
    """
    root = root or _nltk_data_root()
    missing = [f for f in _REQUIRED_FILES if not os.path.isfile(os.path.join(source, f))]
    if missing:
        raise FileNotFoundError(f"{source} is not a WordNet dict folder: it lacks {missing}; {INSTALL_HINT}")
    target = os.path.join(root, "corpora", "wordnet")
    os.makedirs(target, exist_ok=True)
    for name in sorted(os.listdir(source)):
        src, dst = os.path.join(source, name), os.path.join(target, name)
        if os.path.isfile(src) and (not os.path.exists(dst) or os.path.getsize(dst) != os.path.getsize(src)):
            fd, tmp = tempfile.mkstemp(dir=target, prefix=f".{name}.")
            os.close(fd)
            shutil.copyfile(src, tmp)
            os.replace(tmp, dst)
    lexnames = "".join(f"{i:02d}\t{name}\t{_POS_NUMBER[name.split('.')[0]]}\n" for i, name in enumerate(LEXNAMES))
    lex_path = os.path.join(target, "lexnames")
    if not os.path.exists(lex_path) or open(lex_path, encoding="ascii").read() != lexnames:
        fd, tmp = tempfile.mkstemp(dir=target, prefix=".lexnames.")
        with os.fdopen(fd, "w", encoding="ascii") as fh:
            fh.write(lexnames)
        os.replace(tmp, lex_path)
    return root


@functools.lru_cache(maxsize=1)
def _load_wordnet():
    try:
        import nltk
        from nltk.corpus.reader.wordnet import WordNetCorpusReader
    except ImportError:
        return None, f"NLTK is not installed; {INSTALL_HINT}"

    class _OfflineWordNetReader(WordNetCorpusReader):
        """Skips the WordNet-3.0 sense map, which needs `index.sense` (not in `wordnet-base`) and serves only OMW."""

        def map_wn(self, version="wordnet"):
            return None

    with warnings.catch_warnings():  # "multilingual functions are not available" (no Open Multilingual WordNet)
        warnings.simplefilter("ignore")
        if not os.environ.get("MCG_WORDNET_DIR"):
            try:  # NLTK's own data (nltk.download("wordnet")) first
                from nltk.corpus import wordnet

                wordnet.ensure_loaded()
                return wordnet, None
            except LookupError:
                pass
        for source in _wordnet_sources():
            if not os.path.isdir(source):
                continue
            try:
                root = prepare_wordnet_dir(source)
            except OSError as err:  # not a WordNet folder, or the private copy cannot be written
                return None, str(err)
            if root not in nltk.data.path:
                nltk.data.path.insert(0, root)
            return _OfflineWordNetReader(os.path.join(root, "corpora", "wordnet"), None), None
    return None, f"no WordNet data found (looked in NLTK's data path and {_wordnet_sources()}); {INSTALL_HINT}"


def load_wordnet():
    """NLTK's WordNet reader, or None when NLTK or the WordNet data is missing (see `wordnet_unavailable_reason`)."""
    return _load_wordnet()[0]


def wordnet_unavailable_reason() -> str | None:
    """Why `load_wordnet()` returned None, with install instructions; None when WordNet is available."""
    return _load_wordnet()[1]


@functools.lru_cache(maxsize=1 << 16)
def _first_synset_similarity(wordnet, word1: str, word2: str) -> float:
    """Wu-Palmer similarity of the words' first synsets; cached because answers repeat across a test set."""
    synsets1, synsets2 = wordnet.synsets(word1), wordnet.synsets(word2)
    if not synsets1 or not synsets2:
        return 0.0
    # None when the two synsets share no ancestor (e.g. adjective vs noun): no similarity
    return synsets1[0].wup_similarity(synsets2[0]) or 0.0


def wup(word1: str, word2: str, threshold: float, wordnet) -> float:
    """Similarity of two words: first-synset Wu-Palmer, times 0.1 below `threshold` (NExT-OE's `wup`)."""
    if word1 == word2:
        return 1.0
    similarity = _first_synset_similarity(wordnet, word1, word2)
    return similarity * 0.1 if similarity < threshold else similarity


def wups(words1: list[str], words2: list[str], threshold: float, wordnet) -> float:
    """Product over `words1` of the best `wup` against `words2`; words scoring 0 are skipped (NExT-OE's `wups`)."""
    score, matched = 1.0, False
    for w1 in words1:
        best = max((wup(w1, w2, threshold, wordnet) for w2 in words2), default=0.0)
        if best > 0:
            score *= best
            matched = True
    return score if matched else 0.0


def lemmatize(words: list[str], wordnet) -> list[str]:
    """Base forms by WordNet's `morphy` (first of noun, verb, adjective, adverb); unknown words stay as they are."""
    return [wordnet.morphy(w) or w for w in words]


def wups_score(prediction: str, reference: str, threshold: float, wordnet) -> float:
    """WUPS of a prediction against one reference: min of both directions, after lemmatising and stop-word removal."""
    if normalize_answer(prediction) == normalize_answer(reference):
        return 1.0
    pred_words = lemmatize(answer_words(prediction), wordnet)
    ref_words = lemmatize(answer_words(reference), wordnet)
    return min(wups(pred_words, ref_words, threshold, wordnet), wups(ref_words, pred_words, threshold, wordnet))
