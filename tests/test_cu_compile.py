"""Every CUDA kernel file compiles with the local nvcc, for Ampere and Hopper.

Runs without a GPU: `nvcc --ptx` only needs the toolkit. The .cu files
instantiate their templates explicitly (float and double, the 16-bit types
where they have them; the tensor-core files the 16-bit types alone), so this
compiles every kernel the CUDA backend can load.
"""
import glob
import os
import shutil
import subprocess

import pytest

KERNEL_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                          "mytensor", "backend", "kernels")
CU_FILES = sorted(glob.glob(os.path.join(KERNEL_DIR, "*.cu")))
NVCC = shutil.which("nvcc")

# the extra flags backend/cuda/kernels.py gives NVRTC for some files, and the files built for Hopper's sm_90a alone
EXTRA = {"optim.cu": ["--fmad=false"]}
SM90A_ONLY = {"implicit_gemm_wgmma.cu", "conv_tma.cu"}


def test_kernel_files_exist():
    names = {os.path.basename(p) for p in CU_FILES}
    assert {"activation.cu", "arithmetic.cu", "conv.cu", "pool.cu", "softmax_ce.cu", "batch_norm.cu", "dropout.cu",
            "optim.cu", "augment.cu"} <= names


def test_every_kernel_is_registered_for_loading():
    """Each __global__ function of a file is named in the loader's list for that file, or NVRTC
    would not export it and the first launch would fail on the GPU alone."""
    import re

    from mytensor.backend.cuda.kernels import _KERNEL_FILES
    for path in CU_FILES:
        with open(path) as f:
            defined = set(re.findall(r"__global__\s+void\s+(?:__launch_bounds__\([^)]*\)\s+)?(\w+)\s*\(", f.read()))
        name = os.path.basename(path)
        assert defined <= set(_KERNEL_FILES.get(name, ())), f"{name}: {sorted(defined - set(_KERNEL_FILES[name]))}"


@pytest.mark.skipif(NVCC is None, reason="nvcc (the CUDA toolkit compiler) is not on PATH, "
                                         "so the .cu files cannot be compiled here")
@pytest.mark.parametrize("path, arch", [(p, a) for p in CU_FILES for a in (
    ["sm_90a"] if os.path.basename(p) in SM90A_ONLY else ["sm_80", "sm_90"])],
    ids=lambda v: os.path.basename(v) if os.sep in v else v)
def test_cu_compiles(path, arch, tmp_path):
    out = tmp_path / (os.path.basename(path) + f".{arch}.ptx")
    cmd = [NVCC, "--ptx", f"-arch={arch.replace('sm_', 'compute_')}", "-std=c++17",
           *EXTRA.get(os.path.basename(path), []), path, "-o", str(out)]
    res = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True)
    assert res.returncode == 0, f"{' '.join(cmd)}\n{res.stdout}\n{res.stderr}"
    ptx = out.read_text()
    # the float and double instantiations of every kernel are there
    assert ptx.count(".entry") >= 2, ptx[:2000]


@pytest.mark.skipif(NVCC is None, reason="nvcc (the CUDA toolkit compiler) is not on PATH, "
                                         "so the .cu files cannot be compiled here")
@pytest.mark.parametrize("name", sorted(SM90A_ONLY))
@pytest.mark.parametrize("n_tile, stages", [(128, 4), (256, 4)])
def test_hopper_kernels_keep_their_accumulators_in_registers(name, n_tile, stages, tmp_path):
    """ptxas's report on the wgmma kernels: no spills, no stack, and no "wgmma.mma_async
    instructions are serialized" warning (C7515), which an accumulator written between a wgmma
    and its wait brings and which costs the tensor cores their pipelining."""
    cmd = [NVCC, "-cubin", "-arch=sm_90a", "-std=c++17", "-Xptxas", "-v", f"-DWG_BN={n_tile}",
           f"-DWG_STAGES={stages}", os.path.join(KERNEL_DIR, name), "-o", str(tmp_path / "k.cubin")]
    res = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True)
    report = res.stdout + res.stderr
    assert res.returncode == 0, f"{' '.join(cmd)}\n{report}"
    assert "C7515" not in report, report
    frames = [line for line in report.splitlines() if "bytes stack frame" in line]
    assert frames and all(line.strip().startswith("0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads")
                          for line in frames), report
