"""The sandbox images: a CUDA GPU image for real runs and a CPU image built locally for tests.

``python -m sandbox.images build-cpu`` builds (once, cached by tag) the CPU test image from a
debootstrapped Debian and the local torch wheel; ``build-gpu`` builds the GPU image.
"""

from sandbox.images._build import (
    BASE_IMAGE,
    build_base_image,
    build_cpu_image,
    build_gpu_image,
    debian_mirror,
    find_torch_wheel,
    image_exists,
)

__all__ = [
    "BASE_IMAGE",
    "build_base_image",
    "build_cpu_image",
    "build_gpu_image",
    "debian_mirror",
    "find_torch_wheel",
    "image_exists",
]
