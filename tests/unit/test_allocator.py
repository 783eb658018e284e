"""The worker fixes glibc's mmap threshold: freed large blocks leave its RSS (issue 18).

With glibc's rising threshold, once one large block was freed, later 256 KiB blocks
(state leaves, fetch responses) come from the heap, and when they are freed between
small live objects their pages stay resident. Run in a fresh interpreter: what a
test process allocated before would blur the figures.
"""

from __future__ import annotations

import subprocess
import sys


SCRIPT = r"""
import ctypes, sys
from pathlib import Path
from sre_agent.config import load_settings
from sre_agent.streams import allocator

libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]

def rss():
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024

env = {"SRE_AGENT_WORKER__MALLOC_MMAP_THRESHOLD": sys.argv[1]} if sys.argv[1] else {}
allocator.configure(load_settings(env=env).worker.malloc_mmap_threshold)
p = libc.malloc(4 << 20)  # a large block freed: glibc's threshold rises to its size
libc.free(p)
big = []
for _ in range(800):  # 200 MiB of 256 KiB blocks
    b = libc.malloc(256 * 1024)
    ctypes.memset(b, 1, 256 * 1024)
    big.append(b)
before = rss()
for b in big[::2]:  # every other one freed: each between two live ones
    libc.free(b)
print(before - rss())
"""


def _released(threshold: str) -> int:
    out = subprocess.run([sys.executable, "-c", SCRIPT, threshold], capture_output=True,
                         text=True, check=True)
    return int(out.stdout.strip())


def test_freed_large_blocks_leave_rss_with_the_workers_setting() -> None:
    held = _released("0")  # glibc's rising default: the freed 100 MiB stay resident
    assert held < 20 * 2**20
    released = _released("")  # the setting's default (128 KiB): they leave
    assert released > 90 * 2**20
