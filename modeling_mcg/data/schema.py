"""The one row schema every VideoQA reader in `modeling_mcg.data` yields.

One schema for six datasets means the training script, the collator and the metric never branch on the dataset:
open-ended rows have `choices == []`; multiple-choice rows list the candidates and name the right ones by index in
`correct_choices` (one index for NExT-QA/TVQA, any number for CLEVRER, where each option is judged on its own).
"""

import datasets

VIDEOQA_FEATURES = datasets.Features(
    {
        # path to a video file, or to a folder of frame images (TVQA ships frames, not videos)
        "video": datasets.Value("string"),
        "question": datasets.Value("string"),
        # open-ended: the reference answer; multiple choice: the text of the (first) correct choice
        "answer": datasets.Value("string"),
        # question family used for per-type accuracy (e.g. "what", "CH", "descriptive", "count")
        "answer_type": datasets.Value("string"),
        "choices": datasets.List(datasets.Value("string")),
        "correct_choices": datasets.List(datasets.Value("int32")),
        # dialogue/context appended to the question after [SEP] ("" when there is none)
        "subtitles": datasets.Value("string"),
        # the span of the video the question is about, in seconds (None: the whole video)
        "start": datasets.Value("float32"),
        "end": datasets.Value("float32"),
        "question_id": datasets.Value("string"),
    }
)

COLUMNS = list(VIDEOQA_FEATURES)
