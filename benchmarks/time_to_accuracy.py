"""Time to accuracy on the CIFAR-10 JPEG copy (GPU only): `mytensor train --recipe airbench94`
against airbench94 itself, and `--recipe airbench94_muon` against airbench94_muon, in the same job,
on the same data and GPU.

The airbench programs are their public code (KellerJordan/cifar10-airbench, legacy/airbench94.py
and airbench94_muon.py), run as they are from the folder MYTENSOR_ANCHORS names, beside the
`jpeg_to_pt.py` there that writes the cifar10/train.pt and test.pt they read from
`cifar10-jpeg.tar.gz` (in MYTENSOR_DATA, where mytensor finds it too). The airbench94_muon pair runs
when the folder has its program, and not with --quick, which skips its torch.compile. Without those
the section is skipped. Each side makes `runs` runs (seeds 0, 1, ... for mytensor); reported are the mean final test
accuracy and the mean seconds from the first step to the last evaluation (training and the final
evaluation, as airbench times itself) over the runs after the first, which compiles kernels and
records graphs on both sides (airbench94_muon also makes a warm-up run of its own first, left out).
"""
import contextlib
import io
import os
import statistics
import subprocess
import sys
import tempfile

TARGET = 0.907  # airbench94's mean on the JPEG copy, the accuracy to reach
POLICY = {"full": 5, "quick": 2}  # runs a side
JPEG = "cifar10-jpeg.tar.gz"


def parse_airbench(text):
    """(final accuracy, seconds) of each run in an airbench program's printed table: its header row
    names the columns (`| run | epoch | ... | tta_val_acc | total_time_seconds |`, the seconds last),
    and a run's final row is the one whose tta_val_acc is filled."""
    runs, header = [], None
    for line in text.splitlines():
        if not line.startswith("|"):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if "tta_val_acc" in cells:
            header = cells
        elif header is not None and len(cells) == len(header) and cells[header.index("tta_val_acc")] and cells[-1]:
            runs.append((float(cells[header.index("tta_val_acc")]), float(cells[-1])))
    return runs


def summary(runs):
    """Mean and spread of the final accuracies; mean seconds of the warm runs (all but the first)."""
    accs, secs = [a for a, _ in runs], [s for _, s in runs[1:]] or [s for _, s in runs]
    return {"runs": [{"acc": a, "s": s} for a, s in runs], "acc_mean": statistics.fmean(accs),
            "acc_std": statistics.stdev(accs) if len(accs) > 1 else 0.0, "s_mean": statistics.fmean(secs),
            "reached": statistics.fmean(accs) >= TARGET}


def mytensor_runs(data_dir, runs, log, recipe="airbench94"):
    from mytensor.training.run import train
    out = []
    for seed in range(runs):
        with tempfile.TemporaryDirectory() as folder, contextlib.redirect_stdout(io.StringIO()):
            rows = train({"recipe": recipe, "dataset": "cifar10", "data_dir": data_dir, "device": "cuda",
                          "seed": seed, "out": folder}, overwrite=True, show_progress=False)
        last = rows[-1]
        out.append((last["test_acc"], last["elapsed"] + last["test_time"]))
        log(f"  time: mytensor {recipe} recipe, seed {seed}: {last['test_acc']:.4f} in {out[-1][1]:.2f} s")
    return out


# the airbench programs, each the anchor of mytensor's recipe of its name: the runs each prints
# before the ones asked for (airbench94_muon's warm-up)
PROGRAMS = {"airbench94": 0, "airbench94_muon": 1}


def airbench_runs(anchors, tarball, runs, log, program="airbench94"):
    with tempfile.TemporaryDirectory() as work:
        subprocess.run([sys.executable, os.path.join(anchors, "jpeg_to_pt.py"), tarball,
                        os.path.join(work, "cifar10")], check=True, capture_output=True, text=True)
        done = subprocess.run([sys.executable, os.path.join(anchors, f"{program}.py")], cwd=work, text=True,
                              capture_output=True, env={**os.environ, "RUNS": str(runs)})
    found = parse_airbench(done.stdout)
    extra = PROGRAMS[program]
    if done.returncode or len(found) != runs + extra:
        raise RuntimeError(f"{program}.py exited with {done.returncode} after {len(found)} of {runs + extra} runs: "
                           f"{(done.stderr or done.stdout).strip()[-300:]}")
    for a, s in found[extra:]:
        log(f"  time: {program}: {a:.4f} in {s:.2f} s")
    return found[extra:]


def run(device, frameworks, quick=False, log=print):
    if not device.startswith("cuda"):
        return {"skipped": "time to accuracy is measured on the GPU only"}
    anchors, data = os.environ.get("MYTENSOR_ANCHORS"), os.environ.get("MYTENSOR_DATA")
    tarball = os.path.join(data or "", JPEG)
    if not anchors or not os.path.isfile(os.path.join(anchors, "airbench94.py")) or not os.path.isfile(tarball):
        return {"skipped": f"needs MYTENSOR_ANCHORS (a folder with airbench94.py and jpeg_to_pt.py) and "
                           f"MYTENSOR_DATA (a folder with {JPEG})"}
    runs = POLICY["quick" if quick else "full"]
    rows = []
    for program in PROGRAMS:
        if program != "airbench94" and (quick or not os.path.isfile(os.path.join(anchors, f"{program}.py"))):
            continue
        row = {"recipe": program, "target": TARGET, "runs": runs,
               "mytensor": summary(mytensor_runs(data, runs, log, program))}
        if "torch" in frameworks:  # the airbench programs are PyTorch
            row[program] = summary(airbench_runs(anchors, tarball, runs, log, program))
        rows.append(row)
    return {"data": f"the CIFAR-10 JPEG copy ({JPEG}); seconds from the first step to the last evaluation, "
                    f"the mean of the runs after the first", "rows": rows}
