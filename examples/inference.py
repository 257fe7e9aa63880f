"""Answer a question about a video with a trained MCG folder (model + processor), through the pipeline.

    python examples/inference.py outputs/demo clip.mp4 "what color is the square?" --top_k 3
    python examples/inference.py outputs/demo clip.mp4 "which way does it move?" --candidates left right

Open-ended: the top-k beams, scored by their per-token probability. Multiple choice (`--candidates`): every
candidate ranked, scores summing to 1.
"""

import argparse

from transformers import pipeline

from modeling_mcg.pipeline_mcg import TASK


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="folder with the model and its processor (save_pretrained / save_for_hub)")
    parser.add_argument("video", help="video file (anything PyAV decodes)")
    parser.add_argument("question")
    parser.add_argument("--top_k", type=int, default=3, help="answers to print (default 3)")
    parser.add_argument("--candidates", nargs="+", help="candidate answers: rank them instead of generating")
    parser.add_argument("--num_frames", type=int, help="frames to sample (default: the processor's)")
    parser.add_argument("--max_new_tokens", type=int, default=10, help="longest open-ended answer in tokens")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    pipe = pipeline(TASK, model=args.model, device=args.device)  # the package's registered pipeline; no remote code
    options = {"top_k": args.top_k, "num_frames": args.num_frames}
    if args.candidates:
        options["candidate_answers"] = args.candidates
    else:
        options["max_new_tokens"] = args.max_new_tokens
    answers = pipe(args.video, question=args.question, **options)
    for rank, item in enumerate(answers, start=1):
        print(f"{rank}. {item['answer']!r}  score={item['score']:.4f}")
    return answers


if __name__ == "__main__":
    main()
