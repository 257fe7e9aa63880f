"""Convert a caption file and its videos into shards.

    python -m modeling_mcg.data.shards --annotation webvid/results_2M_train.csv --video_dir webvid/videos \
        --output_dir webvid/shards --format webdataset --max_shard_size 1GB --num_proc 8

Prints a summary; videos that are missing or that the project's reader cannot decode are skipped and listed in
`<output_dir>/unreadable.jsonl`. The exit status is 0 even then (the shards are complete without them).
"""

import argparse
import sys

from .format import FORMATS
from .writer import convert_caption_file


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m modeling_mcg.data.shards", description=__doc__.split("\n\n")[0])
    parser.add_argument("--annotation", required=True, help="WebVid csv (videoid,...,page_dir,name), csv with "
                        "video,caption columns, or a .jsonl/.json list of {video, caption}")  # fmt: skip
    parser.add_argument("--video_dir", default=None, help="folder the video names are relative to (default: the "
                        "annotation file's folder); WebVid: <video_dir>/<page_dir>/<videoid>.mp4")  # fmt: skip
    parser.add_argument("--output_dir", required=True, help="empty or new folder for the shards")
    parser.add_argument("--format", choices=FORMATS, default="webdataset")
    parser.add_argument("--max_shard_size", default="512MB", help="size target per shard, e.g. 256MB or 1GB")
    parser.add_argument("--max_shard_samples", type=int, default=None, help="optional cap on samples per shard")
    parser.add_argument("--check_frames", type=int, default=8, help="frames decoded per video to check it reads")
    parser.add_argument("--num_proc", type=int, default=1, help="processes reading and checking videos")
    parser.add_argument("--no_progress", action="store_true", help="hide the progress bar")
    args = parser.parse_args(argv)
    summary = convert_caption_file(
        args.annotation,
        args.output_dir,
        video_dir=args.video_dir,
        format=args.format,
        max_shard_bytes=args.max_shard_size,
        max_shard_samples=args.max_shard_samples,
        check_frames=args.check_frames,
        num_proc=args.num_proc,
        progress=not args.no_progress,
    )
    print(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
