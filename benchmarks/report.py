"""Turning results into files: `results.json` (everything, raw times included),
`table.txt` / `table.md` (one row per measurement, ratio = mytensor / PyTorch,
below 1 means mytensor is faster) and PNG plots of op time against batch size,
input size and channels.
"""
import json
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from .ops import OPS  # noqa: E402

MiB = 2 ** 20


def write_json(results, out_dir):
    path = os.path.join(out_dir, "results.json")
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(results, f, indent=1, default=str)
    os.replace(tmp, path)
    return path


# ------------------------------------------------------------------ table
def _get(d, *keys):
    for k in keys:
        if not isinstance(d, dict) or k not in d:
            return None
        d = d[k]
    return d


def _scale(v, k):
    return None if v is None else v * k


def _row(section, name, detail, unit, mine, theirs, baseline="torch"):
    ratio = mine / theirs if mine is not None and theirs else None
    return {"section": section, "name": name, "detail": detail, "unit": unit, "mytensor": mine,
            baseline: theirs, "baseline": baseline, "ratio": ratio}


def table_rows(results):
    rows, seen = [], set()
    gpu = str(_get(results, "meta", "device")).startswith("cuda")
    for r in _get(results, "host", "rows") or []:
        us = [_scale(_get(r, fw, "median_s"), 1e6) for fw in ("mytensor", "torch")]
        rows.append(_row("host us/op", r["name"], "", "us", *us))
    for r in _get(results, "ops", "rows") or []:
        low = r.get("precision", "fp32") != "fp32"
        key = (r["op"], r["n"], r["size"], r["cin"], r["cout"], low)
        if key in seen:
            continue
        seen.add(key)
        detail = f"N={r['n']} {r['size']}x{r['size']} {r['cin']}->{r['cout']}" + (" bf16 CL" if low else "")
        if r["op"] == "softmax_ce":
            detail = f"N={r['n']} classes={r['cout']}"
        ms = [_scale(_get(r, fw, "median_s"), 1e3) for fw in ("mytensor", "torch")]
        rows.append(_row("ops fwd+bwd", r["op"], detail, "ms", *ms))
    for r in _get(results, "e2e", "rows") or []:
        detail = f"{r['dataset']} bs{r['batch']} {r['optimizer']}"
        mine = _get(r, "mytensor", "s_per_epoch")
        graphed = " (graph)" if _get(r, "mytensor", "cuda_graph") else ""
        rows.append(_row("e2e s/epoch", r["model"], detail + graphed, "s", mine, _get(r, "torch", "s_per_epoch")))
        if "mytensor_eager" in r and _get(r, "mytensor", "cuda_graph") is not False:  # unless the same step
            rows.append(_row("e2e s/epoch", r["model"], detail + " eager", "s",
                             _get(r, "mytensor_eager", "s_per_epoch"), _get(r, "torch", "s_per_epoch")))
        if "torch_graph" in r:
            rows.append(_row("e2e s/epoch", r["model"], detail + " vs CUDA graph", "s", mine,
                             _get(r, "torch_graph", "s_per_epoch"), baseline="torch_graph"))
        if gpu:  # Python overhead and kernel launches matter where the device is asynchronous
            host = [_scale(_get(r, fw, "host_s_per_step"), 1e3) for fw in ("mytensor", "torch")]
            rows.append(_row("host ms/step", r["model"], detail, "ms", *host))
            kern = [_get(r, fw, "gpu_activities_per_step", "kernels") for fw in ("mytensor", "torch")]
            if any(kern):
                rows.append(_row("kernels/step", r["model"], detail, "", *kern))
    for r in _get(results, "precision", "rows") or []:
        ms = [_scale(_get(r, fw, "s_per_step"), 1e3) for fw in ("mytensor", "torch")]
        rows.append(_row("step ms (graph)", r["model"], f"bs{r['batch']} {r['precision']}", "ms", *ms))
    for r in _get(results, "time", "rows") or []:  # each recipe against the airbench program of its name
        detail = f"cifar10 jpeg, {r['runs']} runs, target {100 * r['target']:g}%"
        recipe = r["recipe"]
        rows.append(_row("time to accuracy", f"{recipe} recipe", detail, "s", _get(r, "mytensor", "s_mean"),
                         _get(r, recipe, "s_mean"), baseline=recipe))
        rows.append(_row("final accuracy", f"{recipe} recipe", detail, "%", _scale(_get(r, "mytensor", "acc_mean"),
                         100), _scale(_get(r, recipe, "acc_mean"), 100), baseline=recipe))
    for r in _get(results, "memory", "rows") or []:
        detail = f"{r['dataset']} bs{r['batch']} {r['optimizer']}"
        mem = [_scale(_get(r, fw, "peak_bytes"), 1 / MiB) for fw in ("mytensor", "torch")]
        rows.append(_row("peak memory", r["model"], detail, "MiB", *mem))
    return rows


def _fmt(v):
    if v is None:
        return "-"
    if isinstance(v, int) or float(v).is_integer() and abs(v) >= 100:
        return f"{int(v)}"
    return f"{v:.3g}" if abs(v) < 1000 else f"{v:.0f}"


BASELINE_NOTES = {"torch_graph": " (graph)", "airbench94": " (airbench94)", "airbench94_muon": " (airbench94_muon)"}  # a baseline other than PyTorch eager


def format_table(rows, markdown=False):
    head = ["section", "name", "config", "unit", "mytensor", "pytorch", "ratio"]
    body = [[r["section"], r["name"], r["detail"], r["unit"], _fmt(r["mytensor"]),
             _fmt(r[r["baseline"]]) + BASELINE_NOTES.get(r["baseline"], ""),
             "-" if r["ratio"] is None else f"{r['ratio']:.2f}"] for r in rows]
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
        return "\n".join(lines + ["| " + " | ".join(b) + " |" for b in body]) + "\n"
    widths = [max(len(x) for x in col) for col in zip(head, *body)]
    right = {4, 5, 6}
    fmt = lambda cells: "  ".join(c.rjust(w) if i in right else c.ljust(w)  # noqa: E731
                                  for i, (c, w) in enumerate(zip(cells, widths)))
    return "\n".join([fmt(head), "  ".join("-" * w for w in widths)] + [fmt(b) for b in body]) + "\n"


# ------------------------------------------------------------------ plots
AXES = {"batch": "batch size", "size": "input size (H = W)", "channels": "channels (Cin -> Cout)"}
COLORS = {"mytensor": "tab:blue", "torch": "tab:orange"}


def plot_ops(results, out_dir, title):
    rows = _get(results, "ops", "rows") or []
    paths = []
    for axis, label in AXES.items():
        ops = [op for op in OPS if any(r["op"] == op and r["axis"] == axis for r in rows)]
        if not ops:
            continue
        fig, axs = plt.subplots(1, len(ops), figsize=(3.2 * len(ops), 3.2), squeeze=False)
        for ax, op in zip(axs[0], ops):
            pts = [r for r in rows if r["op"] == op and r["axis"] == axis]
            xs = list(range(len(pts))) if axis == "channels" else [r["value"] for r in pts]
            for fw, color in COLORS.items():
                ys = [(_get(r, fw, "median_s") or float("nan")) * 1e3 for r in pts]
                ax.plot(xs, ys, "o-", color=color, label="PyTorch" if fw == "torch" else fw)
            ax.set_yscale("log")
            if axis == "channels":
                ax.set_xticks(xs, [str(r["value"]) for r in pts], rotation=45, fontsize=7)
            else:
                ax.set_xscale("log", base=2)
                ax.set_xticks(xs, [str(x) for x in xs], fontsize=7)
                ax.minorticks_off()
            ax.set_title(op, fontsize=9)
            ax.set_xlabel(label, fontsize=8)
            ax.grid(True, alpha=0.3)
        axs[0][0].set_ylabel("ms per forward+backward (median)", fontsize=8)
        axs[0][0].legend(fontsize=7)
        fig.suptitle(f"{title}: time against {label}", fontsize=10)
        fig.tight_layout()
        path = os.path.join(out_dir, f"ops_vs_{axis}.png")
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)
    return paths


def plot_e2e(results, out_dir, title):
    rows = _get(results, "e2e", "rows") or []
    variants = [v for v in ("mytensor", "mytensor_eager", "torch", "torch_graph") if any(v in r for r in rows)]
    if not rows or not variants:
        return []
    fig, ax = plt.subplots(figsize=(1.6 + 1.5 * len(rows), 3.4))
    width = 0.8 / len(variants)
    names = {"mytensor": "mytensor (as trained)", "mytensor_eager": "mytensor eager", "torch": "PyTorch eager",
             "torch_graph": "PyTorch CUDA graph"}
    for i, v in enumerate(variants):
        ys = [_get(r, v, "s_per_epoch") or 0 for r in rows]
        ax.bar([j + i * width for j in range(len(rows))], ys, width, label=names[v])
    ax.set_xticks([j + width * (len(variants) - 1) / 2 for j in range(len(rows))],
                  [f"{r['model']}\n{r['dataset']} bs{r['batch']} {r['optimizer']}" for r in rows], fontsize=7)
    ax.set_yscale("log")
    ax.set_ylabel("seconds per epoch (extrapolated)", fontsize=8)
    ax.legend(fontsize=7)
    ax.set_title(f"{title}: training time per epoch", fontsize=10)
    fig.tight_layout()
    path = os.path.join(out_dir, "e2e.png")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return [path]


def write_all(results, out_dir):
    """Every output file; returns the text table (the caller prints it last)."""
    rows = table_rows(results)
    results["table"] = rows
    title = results["meta"].get("device_name", results["meta"]["device"])
    results["plots"] = [os.path.basename(p) for p in plot_ops(results, out_dir, title) +
                        plot_e2e(results, out_dir, title)]
    text = format_table(rows)
    with open(os.path.join(out_dir, "table.txt"), "w") as f:
        f.write(text)
    with open(os.path.join(out_dir, "table.md"), "w") as f:
        f.write(format_table(rows, markdown=True))
    write_json(results, out_dir)
    return text
