"""python -m benchmarks --device cpu|cuda [--quick] [--out DIR] [--only host|ops|e2e|precision|memory|time]
    [--models a,b] [--precisions bf16,...] [--threads N]

Runs mytensor against PyTorch (if installed) on one device and writes
results.json, table.txt, table.md and PNG plots to DIR/<device-tag>/
(default DIR: benchmarks/results). The table is printed last.
"""
import argparse
import os
import sys
import time

THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def _threads_from_argv(argv):
    for i, arg in enumerate(argv):
        if arg == "--threads" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--threads="):
            return arg.split("=", 1)[1]
    return None


# NumPy's BLAS and PyTorch's OpenMP read their thread counts when they load, so
# --threads is applied before anything imports them (child processes inherit it).
if _threads_from_argv(sys.argv[1:]):
    os.environ.update({var: _threads_from_argv(sys.argv[1:]) for var in THREAD_VARS})

from . import e2e, host, memory, ops, precision, report, time_to_accuracy  # noqa: E402
from .common import (Framework, configure_torch, device_tag, load_average, machine_info, short_error,  # noqa: E402
                     torch_available)

SECTIONS = ("host", "ops", "e2e", "precision", "memory", "time")
DEFAULT_OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def _precisions(text):
    chosen = tuple(text.split(","))
    unknown = [p for p in chosen if p not in precision.PRECISIONS]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown precision {unknown[0]!r}: choose among "
                                         f"{', '.join(precision.PRECISIONS)}")
    return chosen


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n\n")[1])
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--quick", action="store_true", help="a tiny smoke subset (about a minute)")
    p.add_argument("--out", default=DEFAULT_OUT, help="results root; files go to OUT/<device-tag>/")
    p.add_argument("--only", choices=SECTIONS, action="append", help="run only this section (repeatable)")
    p.add_argument("--models", default=None, help="comma-separated models for e2e and memory (default: all)")
    p.add_argument("--precisions", type=_precisions, default=precision.PRECISIONS,
                   help="comma-separated precisions for the precision section (default: fp32,tf32,bf16)")
    p.add_argument("--tf32", action="store_true", help="let PyTorch use TF32 on the GPU (default: strict FP32)")
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads for both NumPy's BLAS and PyTorch (default: the libraries' own, all cores)")
    return p.parse_args(argv)


def frameworks_for(device, log):
    if device == "cuda":
        import mytensor
        if not mytensor.cuda_is_available():
            sys.exit("mytensor sees no usable CUDA GPU (is CuPy installed: pip install -e '.[cuda13]'?)")
    fws = {"mytensor": Framework("mytensor", device)}
    if not torch_available():
        log("PyTorch is not installed: timing mytensor alone (ratios will be '-')")
        return fws
    import torch
    if device == "cuda" and not torch.cuda.is_available():
        log("PyTorch has no CUDA here: timing mytensor alone")
        return fws
    if device == "cuda":
        torch.zeros(1, device="cuda")  # initialise torch's CUDA state before anything is timed
    fws["torch"] = Framework("torch", device)
    return fws


def notes(args, results):
    """What a reader of the table must know, printed above it and kept in the JSON."""
    out = ["ratio = mytensor / PyTorch: below 1 means mytensor is faster (or smaller)",
           "host: median time per call of a small op, the frameworks alternating block by block "
           + ("(the host's time to queue it)" if args.device == "cuda" else "(one thread each)"),
           "ops: median of repetitions after warm-up " + ("(CUDA events after a device sync)" if args.device ==
                                                          "cuda" else "(perf_counter)")
           + (", the frameworks alternating repetition by repetition (e2e: block of steps by block)"
              if args.device == "cpu" and args.threads == 1 else "")]
    if "e2e" in results and "policy" in results["e2e"]:
        p = results["e2e"]["policy"]
        out.append(f"e2e s/epoch is EXTRAPOLATED: {p['min_steps']}-{p['max_steps']} timed steps (as many as fit "
                   f"{p['budget_s']} s) after warm-up, x steps per epoch; random data already on the device")
    if "memory" in results and "measures" in results["memory"]:
        out.append("peak memory: " + results["memory"]["measures"])
    if args.device == "cuda":
        out.append("PyTorch " + ("may use TF32 (--tf32)" if args.tf32 else "runs in strict FP32 (TF32 off), as "
                                 "mytensor does"))
    elif not args.quick:
        out.append("CPU sweeps are cut to fit 10 minutes on a small machine: fewer points per axis, few "
                   "repetitions, few e2e steps (see ops.reps_policy and e2e.policy in the JSON)")
    if any(isinstance(results.get(k), dict) and results[k].get("hurried") for k in ("ops", "e2e")):
        out.append("the suite ran out of its time budget: later measurements took their minimum repetitions")
    busy, cores = results["meta"].get("loadavg_at_start") or 0, os.cpu_count() or 1
    if args.device == "cpu" and busy > 0.75 * cores:
        out.append(f"the CPU was busy when the run started (load average {busy} on {cores} cores): CPU times are "
                   f"noisy" + ("" if args.threads == 1 else ", multi-threaded ops most (a parallel region waits "
                               "for a descheduled thread); --threads 1 gives steadier figures"))
    if args.threads:
        out.append(f"both frameworks limited to {args.threads} CPU thread(s) (--threads)")
    if args.quick:
        out.append("--quick: a smoke run on tiny sizes with few repetitions, not a measurement")
    return out


def main(argv=None):
    args = parse_args(argv)
    started = time.perf_counter()
    log = lambda msg: print(msg, flush=True)  # noqa: E731
    sections = [s for s in SECTIONS if not args.only or s in args.only]
    models = args.models.split(",") if args.models else None
    torch_settings = configure_torch(args.device, args.tf32, args.threads)
    frameworks = frameworks_for(args.device, log)
    tag = device_tag(args.device) + (f"-threads{args.threads}" if args.threads and args.device == "cpu" else "")
    out_dir = os.path.join(args.out, tag)
    os.makedirs(out_dir, exist_ok=True)
    results = {"meta": machine_info(args.device, torch_settings), "frameworks": list(frameworks),
               "quick": args.quick, "sections": sections}
    log(f"mytensor benchmarks on {results['meta']['device_name']} ({args.device}); "
        f"frameworks: {', '.join(frameworks)}; sections: {', '.join(sections)}"
        + ("; quick" if args.quick else "") + f"; results in {out_dir}")
    for section in sections:
        t0 = time.perf_counter()
        log(f"[{section}]")
        try:
            if section == "host":
                results["host"] = host.run(args.device, frameworks, quick=args.quick, log=log)
            elif section == "ops":
                results["ops"] = ops.run(args.device, frameworks, quick=args.quick, log=log,
                                         alternate=args.threads == 1)
            elif section == "e2e":
                results["e2e"] = e2e.run(args.device, frameworks, quick=args.quick, models=models, log=log,
                                         alternate=args.threads == 1)
            elif section == "precision":
                results["precision"] = precision.run(args.device, frameworks, quick=args.quick, log=log,
                                                     precisions=args.precisions)
            elif section == "memory":
                results["memory"] = memory.run(args.device, frameworks, quick=args.quick, models=models, log=log)
            else:
                results["time"] = time_to_accuracy.run(args.device, frameworks, quick=args.quick, log=log)
        except Exception as e:  # keep what the other sections measured
            results[section] = {"error": short_error(e)}
            log(f"[{section}] failed: {short_error(e)}")
        results.setdefault("section_seconds", {})[section] = round(time.perf_counter() - t0, 1)
        report.write_json(results, out_dir)  # partial results survive a later crash or timeout
        log(f"[{section}] {results['section_seconds'][section]} s")
    results["meta"]["elapsed_s"] = round(time.perf_counter() - started, 1)
    results["meta"]["loadavg_at_end"] = load_average()
    results["notes"] = notes(args, results)
    table = report.write_all(results, out_dir)
    print(f"\nmytensor / PyTorch on {results['meta']['device_name']} ({results['meta']['elapsed_s']} s in all; "
          f"files in {out_dir})")
    print("".join(f"  - {note}\n" for note in results["notes"]))
    print(table, end="", flush=True)


if __name__ == "__main__":
    main()
