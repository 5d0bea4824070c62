"""GPU self-check for the image: torch and CUDA versions, devices and memory, NCCL, and a
matrix product on each GPU. The same as `jupyter-flow doctor`.

    python gpu_check.py                 # report; exit 0
    python gpu_check.py --require-gpu   # exit 1 with the reason when no GPU is usable
"""

from __future__ import annotations

import sys

from jupyter_flow.cli import main

if __name__ == "__main__":
    sys.exit(main(["doctor", *sys.argv[1:]]))
