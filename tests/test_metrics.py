"""The `videoqa_accuracy` metric (loaded offline through `evaluate`), answer normalisation and WUPS.

WUPS expectations are hand-derived from WordNet 3.0's Wu-Palmer values of the first synsets:
dog/cat = 2*13/(14+14) = 6/7, dog/car = 0.4, puppy/dog = 26/29, guitar/piano = 0.9.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from modeling_mcg.metrics import (
    METRIC_PATH,
    answer_words,
    load_videoqa_metric,
    load_wordnet,
    multihot,
    normalize_answer,
    wordnet_unavailable_reason,
    wup,
    wups,
    wups_score,
)
from modeling_mcg.metrics.wups import LEXNAMES, prepare_wordnet_dir

DOG_CAT, DOG_CAR, PUPPY_DOG = 6 / 7, 0.4, 26 / 29

needs_wordnet = pytest.mark.skipif(
    load_wordnet() is None, reason=f"WordNet unavailable: {wordnet_unavailable_reason()}"
)


@pytest.fixture(scope="module")
def metric():
    # in memory: no cache-file locks, so a compute that raised does not stall the next one
    return load_videoqa_metric(keep_in_memory=True)


def test_normalize_answer():
    assert normalize_answer("  Dog.  ") == "dog"
    assert normalize_answer("A  Red\tCar ?!") == "a red car"
    assert normalize_answer("the t-shirt", strip_articles=True) == "t-shirt"
    assert normalize_answer("2.5 o'clock...") == "2.5 o'clock"
    assert normalize_answer("ｆｕｌｌwidth") == "fullwidth"  # NFKC
    assert normalize_answer("theatre", strip_articles=True) == "theatre"  # only a whole leading word
    with pytest.raises(TypeError, match="answers must be strings, got int"):
        normalize_answer(3)
    assert answer_words("The man's dog is on a red mat!") == ["man's", "dog", "red", "mat"]


def test_open_accuracy_by_type_and_extra_references(metric):
    out = metric.compute(
        predictions=["Dog.", "a cat", "Playing guitar", "kitchen"],
        references=["dog", "cat", "playing guitar", "bathroom"],
        answer_types=["what", "what", "how", "where"],
        extra_references=[[], None, [], ["in the kitchen", "kitchen"]],
        wups=False,
    )
    assert out == {"accuracy": 0.75, "accuracy_how": 1.0, "accuracy_what": 0.5, "accuracy_where": 1.0}
    stripped = metric.compute(predictions=["a cat"], references=["cat"], wups=False, strip_articles=True)
    assert stripped == {"accuracy": 1.0}


def test_add_batch_then_compute(metric):
    metric.add_batch(predictions=["x", "y"], references=["x", "z"])
    metric.add_batch(predictions=["w"], references=["w"])
    out = metric.compute(answer_types=["a", "b", "b"], wups=False)
    assert out == pytest.approx({"accuracy": 2 / 3, "accuracy_a": 1.0, "accuracy_b": 0.5})


def test_multiple_choice_mode(metric):
    out = metric.compute(predictions=[0, 3, 2, 1], references=[0, 3, 1, 4], answer_types=["CW", "CW", "TN", "DO"])
    assert out == {"accuracy": 0.5, "accuracy_CW": 1.0, "accuracy_DO": 0.0, "accuracy_TN": 0.0}
    with pytest.raises(ValueError, match="mode='open' but predictions are int"):
        metric.compute(predictions=[1], references=[1], mode="open")


def test_multilabel_mode_clevrer(metric):
    # question 1: 3 of 4 options right; question 2: all right; question 3 (3 options): all right
    predictions = [multihot([0, 3], 4), multihot([1], 2), multihot([], 3)]
    references = [multihot([0, 2, 3], 4), multihot([1], 2), [0, 0, 0]]
    out = metric.compute(
        predictions=predictions, references=references, answer_types=["predictive", "explanatory", "predictive"]
    )
    assert out == pytest.approx(
        {
            "accuracy": 2 / 3,
            "accuracy_explanatory": 1.0,
            "accuracy_predictive": 0.5,
            "option_accuracy": 8 / 9,
            "option_accuracy_explanatory": 1.0,
            "option_accuracy_predictive": 6 / 7,
        }
    )
    with pytest.raises(ValueError, match="example 0: prediction has 2 options and reference 3"):
        metric.compute(predictions=[[1, 0]], references=[[1, 0, 0]])
    with pytest.raises(ValueError, match="must be 0 or 1"):
        metric.compute(predictions=[[2, 0]], references=[[1, 0]])
    with pytest.raises(ValueError, match=r"choice indices \[4\] are outside 0\.\.3"):
        multihot([4], 4)


def test_input_errors(metric):
    with pytest.raises(ValueError, match="`answer_types` has 1 entries but there are 2 predictions"):
        metric.compute(predictions=["a", "b"], references=["a", "b"], answer_types=["what"], wups=False)
    with pytest.raises(ValueError, match="`extra_references` only applies to open-ended answers"):
        metric.compute(predictions=[1], references=[1], extra_references=[["x"]])
    with pytest.raises(ValueError, match="example 0: extra_references entries must be lists of strings"):
        metric.compute(predictions=["a"], references=["b"], extra_references=["a"], wups=False)
    with pytest.raises(ValueError, match="mode='exact' is not one of"):
        metric.compute(predictions=["a"], references=["a"], mode="exact")


def test_metric_loads_by_path_with_evaluate():
    import evaluate

    loaded = evaluate.load(METRIC_PATH)
    assert loaded.compute(predictions=["Yes"], references=["yes"], wups=False) == {"accuracy": 1.0}


def test_readme_documents_the_path_evaluate_loads_the_metric_from():
    """`evaluate.load("videoqa_accuracy")` cannot work (evaluate looks in the working directory, then the Hub); the
    README gives the path that does, and that snippet runs."""
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    assert "metric = evaluate.load(modeling_mcg.metrics.METRIC_PATH)" in readme
    namespace: dict = {}
    exec(
        "import evaluate\nimport modeling_mcg.metrics\nmetric = evaluate.load(modeling_mcg.metrics.METRIC_PATH)",
        namespace,
    )
    result = namespace["metric"].compute(predictions=["red"], references=["red"], answer_types=["color"], wups=False)
    assert result["accuracy"] == result["accuracy_color"] == 1.0


@needs_wordnet
def test_wup_word_pairs():
    wn = load_wordnet()
    assert wup("dog", "cat", 0.0, wn) == pytest.approx(DOG_CAT)
    assert wup("dog", "car", 0.0, wn) == pytest.approx(DOG_CAR)
    assert wup("dog", "cat", 0.9, wn) == pytest.approx(DOG_CAT * 0.1)  # below the threshold: down-weighted
    assert wup("guitar", "piano", 0.9, wn) == pytest.approx(0.9)  # at the threshold: kept
    assert wup("dog", "dog", 0.9, wn) == 1.0
    assert wup("dog", "qwzxv", 0.0, wn) == 0.0  # unknown to WordNet


@needs_wordnet
def test_wups_product_skip_and_min_of_directions():
    wn = load_wordnet()
    # product over the first list of the best match in the second
    assert wups(["cat", "car"], ["dog"], 0.0, wn) == pytest.approx(DOG_CAT * DOG_CAR)
    assert wups(["dog"], ["cat", "car"], 0.0, wn) == pytest.approx(DOG_CAT)
    # a word with no similarity is skipped, not multiplied in; all skipped gives 0
    assert wups(["dog", "qwzxv"], ["cat"], 0.0, wn) == pytest.approx(DOG_CAT)
    assert wups(["qwzxv"], ["cat"], 0.0, wn) == 0.0
    # min of both directions; stop words ("a", "and", "the") dropped; plural lemmatised to "dog"
    assert wups_score("a cat and a car", "the dogs", 0.0, wn) == pytest.approx(DOG_CAT * DOG_CAR)
    assert wups_score("a cat and a car", "the dogs", 0.9, wn) == pytest.approx(DOG_CAT * DOG_CAR * 0.01)
    assert wups_score("Dogs.", "dog", 0.9, wn) == 1.0


@needs_wordnet
def test_metric_wups_nextqa_rules(metric):
    out = metric.compute(
        predictions=["puppy", "piano", "3", "cat"],
        references=["cat", "guitar", "three", "dog"],
        answer_types=["DO", "DO", "DC", "CH"],
        extra_references=[["dog"], [], [], []],  # puppy scores against the better reference, dog
    )
    assert out["accuracy"] == 0.0
    assert out["wups_0_DO"] == pytest.approx((PUPPY_DOG + 0.9) / 2)
    assert out["wups_0.9_DO"] == pytest.approx((PUPPY_DOG * 0.1 + 0.9) / 2)  # 0.9 threshold, not 9
    assert out["wups_0_DC"] == 0.0 and out["wups_0.9_DC"] == 0.0  # counts: exact match only
    assert out["wups_0_CH"] == pytest.approx(DOG_CAT)
    assert out["wups_0"] == pytest.approx((PUPPY_DOG + 0.9 + DOG_CAT) / 4)


@pytest.mark.skipif(
    not os.path.isfile("/usr/share/wordnet/data.noun"),
    reason="Debian's WordNet files are absent: apt-get install -y --no-install-recommends wordnet-base",
)
def test_private_wordnet_dir_has_lexnames(tmp_path):
    root = prepare_wordnet_dir("/usr/share/wordnet", str(tmp_path))
    lines = open(os.path.join(root, "corpora", "wordnet", "lexnames"), encoding="ascii").read().splitlines()
    assert len(lines) == len(LEXNAMES) == 45
    assert lines[0] == "00\tadj.all\t3" and lines[5] == "05\tnoun.animal\t1" and lines[44] == "44\tadj.ppl\t3"
    with pytest.raises(FileNotFoundError, match="is not a WordNet dict folder.*apt-get install"):
        prepare_wordnet_dir(str(tmp_path), str(tmp_path / "x"))


def test_without_wordnet_wups_keys_are_left_out(tmp_path):
    """A fresh interpreter pinned to an empty WordNet folder: accuracy only, and a warning saying how to install."""
    code = (
        "from modeling_mcg.metrics import load_videoqa_metric\n"
        "print(sorted(load_videoqa_metric().compute(predictions=['dog'], references=['cat'])))\n"
    )
    env = {**os.environ, "MCG_WORDNET_DIR": str(tmp_path), "XDG_CACHE_HOME": str(tmp_path / "cache")}
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=repo, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "['accuracy']"
    assert "WUPS keys left out" in result.stderr and "apt-get install -y --no-install-recommends wordnet-base" in (
        result.stderr
    )
