"""``python -m sandbox.images build-host|build-cpu|build-gpu [--tag T] [--rebuild] [--start-daemon DIR]``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sandbox._backend import BackendError
from sandbox._docker import CPU_IMAGE, GPU_IMAGE, start_docker_daemon
from sandbox.images._build import build_cpu_image, build_gpu_image, build_host_runtime_image


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sandbox.images", description=__doc__)
    parser.add_argument("command", choices=["build-host", "build-cpu", "build-gpu"])
    parser.add_argument("--tag")
    parser.add_argument("--base", help="build-gpu: the Python 3.11 base image")
    parser.add_argument(
        "--torch-index-url",
        help="build-gpu: a PyTorch CUDA wheel index for another CUDA build of the pinned torch",
    )
    parser.add_argument("--rebuild", action="store_true")
    parser.add_argument(
        "--start-daemon",
        type=Path,
        metavar="DIR",
        help="start dockerd with this data directory when none is running",
    )
    args = parser.parse_args(argv)
    try:
        if args.start_daemon:
            start_docker_daemon(args.start_daemon)
        if args.command == "build-host":
            tag = build_host_runtime_image()
        elif args.command == "build-cpu":
            tag = build_cpu_image(args.tag or CPU_IMAGE, rebuild=args.rebuild)
        else:
            tag = build_gpu_image(
                args.tag or GPU_IMAGE, base=args.base, torch_index_url=args.torch_index_url
            )
    except BackendError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(tag)
    return 0


if __name__ == "__main__":
    sys.exit(main())
