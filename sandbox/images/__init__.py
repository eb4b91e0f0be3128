"""The sandbox images; every one runs jobs as the non-root user ``pb`` (uid 61000).

``python -m sandbox.images build-host`` imports (in under a second) a tiny image whose jobs run
this machine's own Python, bound read-only (tests, CI); ``build-cpu`` builds (once, cached by
tag) the self-contained CPU image from a debootstrapped Debian and the local torch wheel;
``build-gpu`` builds the CUDA image.
"""

from sandbox.images._build import (
    BASE_IMAGE,
    HOST_RUNTIME_IMAGE,
    build_base_image,
    build_cpu_image,
    build_gpu_image,
    build_host_runtime_image,
    debian_mirror,
    find_torch_wheel,
    host_runtime_paths,
    image_exists,
    pinned_torch_version,
)

__all__ = [
    "BASE_IMAGE",
    "HOST_RUNTIME_IMAGE",
    "build_base_image",
    "build_cpu_image",
    "build_gpu_image",
    "build_host_runtime_image",
    "debian_mirror",
    "find_torch_wheel",
    "host_runtime_paths",
    "image_exists",
    "pinned_torch_version",
]
