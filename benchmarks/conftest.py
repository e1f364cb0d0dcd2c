"""Benchmark harness settings.

glibc returns every freed block above its mmap threshold (at most 32 MiB) to the kernel, so a
function that returns a fresh 256×224×224 float32 batch (51 MiB) pays ~10 ms of page faults per
call on these VMs, whatever it computes. PyTorch's CPU performance-tuning guide avoids this by
switching to jemalloc/tcmalloc, which keep freed memory for reuse. We get the same effect with
glibc's own ``mallopt`` so no extra library is needed. It applies to the whole process, so the
anchors (NumPy/OpenCV per-image code) and aubench are measured under the same allocator; each
benchmark records whether it was active in ``extra_info["malloc_tuned"]``.
"""

import ctypes
import ctypes.util

import pytest

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3


def _keep_freed_memory() -> bool:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        return bool(
            libc.mallopt(M_MMAP_THRESHOLD, 1 << 30) and libc.mallopt(M_TRIM_THRESHOLD, 1 << 30)
        )
    except (OSError, AttributeError):  # not glibc: leave the allocator alone
        return False


MALLOC_TUNED = _keep_freed_memory()


@pytest.fixture
def harness_info(benchmark):
    benchmark.extra_info["malloc_tuned"] = MALLOC_TUNED
    return benchmark.extra_info
