"""VideoQA dataset readers: each public annotation format → one `datasets.Dataset` with `VIDEOQA_FEATURES`.

`load_videoqa_dataset(name, data_dir, split, **kwargs)` picks the reader by name; every reader is called as
`reader(data_dir, split, **kwargs)`, so a new dataset is one more `_READERS` entry. All readers check every video
up front: `on_missing="raise"` (default) fails with the count, five examples and the folders searched;
`on_missing="skip"` drops those questions with one warning.
"""

from collections.abc import Callable
from functools import partial

import datasets

from .activitynet_qa import load_activitynet_qa
from .captions import CAPTION_FEATURES, load_caption_dataset, synthetic_captions
from .clevrer import load_clevrer, multilabel_records
from .msrvtt_qa import load_msrvtt_qa
from .msvd_qa import load_msvd_qa
from .nextqa import load_nextqa, load_nextqa_references
from .schema import COLUMNS, VIDEOQA_FEATURES
from .shards import ShardedVideoDataset, ShardWriter, convert_caption_file
from .synthetic import load_synthetic_videoqa
from .tvqa import load_tvqa

_READERS: dict[str, Callable[..., datasets.Dataset]] = {
    "msrvtt-qa": load_msrvtt_qa,
    "msvd-qa": load_msvd_qa,
    "activitynet-qa": load_activitynet_qa,
    "nextqa-oe": partial(load_nextqa, task="oe"),
    "nextqa-mc": partial(load_nextqa, task="mc"),
    "tvqa": load_tvqa,
    "clevrer": load_clevrer,
    # the built-in set: `data_dir` is its cache folder (None: $MCG_CACHE or ~/.cache/modeling_mcg)
    "synthetic": lambda data_dir, split, **kwargs: load_synthetic_videoqa(split=split, cache_dir=data_dir, **kwargs),
}
DATASET_NAMES = tuple(_READERS)


def load_videoqa_dataset(name: str, data_dir: str | None, split: str = "train", **kwargs) -> datasets.Dataset:
    """Read dataset `name` (one of `DATASET_NAMES`; case and `_`/`-` do not matter) from `data_dir`.

    `kwargs` go to the reader (e.g. `video_dir=`, `on_missing="skip"`; see each `load_*` function).
    """
    key = name.lower().replace("_", "-")
    if key not in _READERS:
        raise ValueError(f"unknown VideoQA dataset {name!r}; choose one of {', '.join(DATASET_NAMES)}")
    return _READERS[key](data_dir, split, **kwargs)


__all__ = [
    "CAPTION_FEATURES",
    "COLUMNS",
    "DATASET_NAMES",
    "VIDEOQA_FEATURES",
    "ShardWriter",
    "ShardedVideoDataset",
    "convert_caption_file",
    "load_activitynet_qa",
    "load_caption_dataset",
    "load_clevrer",
    "load_msrvtt_qa",
    "load_msvd_qa",
    "load_nextqa",
    "load_nextqa_references",
    "load_tvqa",
    "multilabel_records",
    "load_synthetic_videoqa",
    "synthetic_captions",
    "load_videoqa_dataset",
]
