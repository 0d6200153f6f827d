"""`curves.png`: loss and accuracy per epoch, train and test, side by side."""
from ..serialization import atomic_write


def plot_curves(rows, path):
    """Written atomically, so a run killed while plotting never leaves half a PNG.
    matplotlib is imported here, not at start-up: it takes longer to import than
    the rest of mytensor, and `eval` and `predict` never plot."""
    import matplotlib
    matplotlib.use("Agg")  # files only: training runs on machines without a screen
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    epochs = [r["epoch"] for r in rows]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    for split in ("train", "test"):
        ax_loss.plot(epochs, [r[f"{split}_loss"] for r in rows], marker="o", label=split)
        ax_acc.plot(epochs, [100 * r[f"{split}_acc"] for r in rows], marker="o", label=split)
    ax_loss.set(xlabel="epoch", ylabel="loss", title="Loss")
    ax_acc.set(xlabel="epoch", ylabel="accuracy (%)", title="Accuracy")
    for ax in (ax_loss, ax_acc):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    with atomic_write(path) as f:
        fig.savefig(f, format="png", dpi=100)
    plt.close(fig)
