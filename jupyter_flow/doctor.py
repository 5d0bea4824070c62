"""`jupyter-flow doctor`: what this machine offers the model nodes (torch, CUDA, GPUs).

Reports torch and CUDA versions, whether CUDA is available, each device's name and
memory, NCCL, and runs a small matrix product on each GPU to prove it computes. With
`--require-gpu` it exits 1 and says why when no GPU can be used (no driver, or a
container started without `--gpus`).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import platform
import shutil
import time
from typing import Any

__all__ = ["add_to_cli", "diagnose"]


def _why_no_gpu() -> str:
    if not glob.glob("/dev/nvidia[0-9]*") and not os.path.exists("/proc/driver/nvidia/version"):
        if shutil.which("nvidia-smi") is None:
            return (
                "no NVIDIA GPU is visible: no /dev/nvidia* device and no driver. On a GPU host, install the "
                "NVIDIA driver; in a container, start it with `--gpus all` (docker) or a GPU reservation (compose)"
            )
        return "nvidia-smi is present but no GPU device is visible: start the container with `--gpus all`"
    return "a GPU device is visible but torch cannot use it: check that the torch build matches the driver's CUDA version"


def diagnose(*, matmul_size: int = 1024) -> dict[str, Any]:
    """A JSON-able report of torch and the GPUs, with a timed matrix product per GPU."""
    report: dict[str, Any] = {"python": platform.python_version(), "platform": platform.platform()}
    try:
        import torch
    except ImportError:
        report.update(torch=None, cuda_available=False, devices=[], problem="torch is not installed: pip install 'jupyter-flow[torch]'")
        return report
    report.update(
        torch=torch.__version__,
        cuda_build=torch.version.cuda,
        cudnn=torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        cuda_available=torch.cuda.is_available(),
        nccl=None,
        devices=[],
    )
    if torch.distributed.is_available():
        report["nccl"] = torch.distributed.is_nccl_available()
        if report["nccl"] and torch.cuda.is_available():
            try:
                report["nccl_version"] = ".".join(map(str, torch.cuda.nccl.version()))
            except Exception:  # reported as unknown rather than failing the whole check
                report["nccl_version"] = None
    if not torch.cuda.is_available():
        report["problem"] = _why_no_gpu()
        return report
    for index in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(index)
        device: dict[str, Any] = {
            "index": index,
            "name": props.name,
            "capability": f"{props.major}.{props.minor}",
            "memory_total_gib": round(props.total_memory / 2**30, 2),
        }
        try:
            free, _ = torch.cuda.mem_get_info(index)
            device["memory_free_gib"] = round(free / 2**30, 2)
            a = torch.randn(matmul_size, matmul_size, device=f"cuda:{index}")
            b = torch.randn(matmul_size, matmul_size, device=f"cuda:{index}")
            (a @ b).sum().item()  # warm-up
            torch.cuda.synchronize(index)
            t0 = time.perf_counter()
            c = a @ b
            torch.cuda.synchronize(index)
            seconds = time.perf_counter() - t0
            expected = (a.cpu() @ b.cpu())
            device["matmul_ok"] = bool(torch.allclose(c.cpu(), expected, rtol=1e-2, atol=1e-2))
            device["matmul_tflops"] = round(2 * matmul_size**3 / seconds / 1e12, 2)
        except Exception as exc:  # the report names what failed on this device
            device["matmul_ok"] = False
            device["error"] = f"{type(exc).__name__}: {exc}"
        report["devices"].append(device)
    if any(not d.get("matmul_ok") for d in report["devices"]):
        report["problem"] = "a GPU failed the matrix-product check: " + "; ".join(
            f"cuda:{d['index']}: {d.get('error', 'wrong result')}" for d in report["devices"] if not d.get("matmul_ok")
        )
    return report


def _print(report: dict[str, Any]) -> None:
    print(f"python        {report['python']} on {report['platform']}")
    print(f"torch         {report.get('torch') or 'not installed'}")
    if report.get("torch"):
        print(f"CUDA build    {report.get('cuda_build') or 'none (CPU build)'}")
        print(f"cuDNN         {report.get('cudnn') or 'none'}")
        print(f"NCCL          {report.get('nccl_version') or report.get('nccl')}")
        print(f"CUDA usable   {report['cuda_available']}")
    for d in report.get("devices", []):
        status = f"matmul ok, {d['matmul_tflops']} TFLOP/s" if d.get("matmul_ok") else f"FAILED: {d.get('error', 'wrong result')}"
        print(f"cuda:{d['index']}        {d['name']} (sm {d['capability']}, {d['memory_total_gib']} GiB): {status}")
    if report.get("problem"):
        print(f"note          {report['problem']}")


def _cmd_doctor(args: argparse.Namespace) -> int:
    report = diagnose()
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        _print(report)
    usable = report.get("cuda_available") and report.get("devices") and all(d.get("matmul_ok") for d in report["devices"])
    if args.require_gpu and not usable:
        print(f"error: a GPU is required: {report.get('problem', 'none found')}", flush=True)
        return 1
    return 0


def add_to_cli(sub: Any) -> None:
    p = sub.add_parser("doctor", help="report torch, CUDA and GPUs; check each GPU with a matrix product")
    p.add_argument("--require-gpu", action="store_true", help="exit 1 when no GPU is usable")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(fn=_cmd_doctor)
