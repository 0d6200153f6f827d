"""DataLoader: turns a dataset into a stream of batches of Tensors.

Three jobs, each kept simple:

* Order. Every epoch's order is a permutation drawn from a generator seeded by
  (seed, epoch) alone, so epoch 7 is shuffled the same way whether the run got
  there directly or was resumed from a checkpoint after epoch 6 (`set_epoch`, or
  `state_dict`/`load_state_dict`). Augmentation uses (seed, epoch, batch number).
* Gathering. A batch is one call to `dataset.get_batch(indices)`: a single
  fancy-indexing copy for in-memory datasets, instead of a Python loop over samples.
* Overlap. With `prefetch=True` a background thread gathers and transforms the next
  two batches while the current one trains. NumPy releases the GIL inside its copy
  loops, so the thread really runs alongside the training step. The thread makes
  NumPy arrays only; they become Tensors (and move to the device) in the caller's
  thread, where the device is known to be set up.
"""
import queue
import threading

import numpy as np

from ..creation import from_numpy
from .dataset import collate
from .transforms import apply


def _generator(seed, *key):
    """An independent random stream for (seed, *key): SeedSequence's spawn_key
    gives statistically separate streams for, e.g., (epoch 3, batch 17)."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))


_SHUFFLE, _AUGMENT = 0, 1  # the first key of each stream, so they never coincide


class DataLoader:
    """Iterate over `dataset` in batches of (images, labels) Tensors.

    transform: applied to the images array of each batch, e.g. transforms.Compose([...]);
        it gets a per-batch NumPy Generator (see mytensor.data.transforms).
    seed: makes shuffling and augmentation reproducible; None picks a random one
        (still recorded in `state_dict()`, so a resumed run can repeat it).
    device: 'cpu', 'cuda', ... where the yielded Tensors live (None: CPU).
    """

    def __init__(self, dataset, batch_size=1, shuffle=False, drop_last=False, transform=None,
                 seed=None, prefetch=True, device=None):
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.dataset, self.batch_size = dataset, int(batch_size)
        self.shuffle, self.drop_last = shuffle, drop_last
        self.transform, self.prefetch, self.device = transform, prefetch, device
        self.seed = np.random.SeedSequence().entropy if seed is None else int(seed) % 2**64
        self.epoch = 0  # the epoch the next iteration will run

    def __len__(self):
        n = len(self.dataset)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    # ---------------------------------------------------------------- order and resuming
    def set_epoch(self, epoch):
        """Choose the epoch (and so the shuffle and augmentation) of the next iteration.
        Iterating without calling it runs epochs 0, 1, 2, ..."""
        self.epoch = int(epoch)

    def state_dict(self):
        return {"seed": self.seed, "epoch": self.epoch}

    def load_state_dict(self, state):
        self.seed, self.epoch = int(state["seed"]), int(state["epoch"])

    def indices(self, epoch):
        """The order in which an epoch visits the samples."""
        n = len(self.dataset)
        if not self.shuffle:
            return np.arange(n)
        return _generator(self.seed, _SHUFFLE, epoch).permutation(n)

    # ---------------------------------------------------------------- batches
    def numpy_batches(self, epoch):
        """The epoch's batches as tuples of NumPy arrays, transforms applied."""
        order = self.indices(epoch)
        stop = len(self) * self.batch_size if self.drop_last else len(order)
        for b, start in enumerate(range(0, stop, self.batch_size)):
            fields = _get_batch(self.dataset, order[start:start + self.batch_size])
            if self.transform is not None:
                images = apply(self.transform, fields[0], _generator(self.seed, _AUGMENT, epoch, b))
                fields = (images,) + tuple(fields[1:])
            yield fields

    def __iter__(self):
        epoch = self.epoch
        self.epoch += 1
        batches = self.numpy_batches(epoch)
        if self.prefetch:
            batches = _in_background(batches, depth=2)
        for fields in batches:
            tensors = tuple(self._to_tensor(a) for a in fields)
            yield tensors[0] if len(tensors) == 1 else tensors

    def prepare(self, images):
        """Make a NumPy batch (N, C, H, W) of float32 images in [0, 1] ready for a
        model, as this loader would: its transform, then a Tensor on its device.
        For predicting on new images; random transforms use a fixed generator."""
        if self.transform is not None:
            images = apply(self.transform, np.asarray(images, dtype=np.float32), _generator(self.seed, _AUGMENT))
        return self._to_tensor(images)

    def _to_tensor(self, array):
        t = from_numpy(np.ascontiguousarray(array))
        return t if self.device is None else t.to(self.device)

    def __repr__(self):
        return (f"DataLoader({self.dataset!r}, batch_size={self.batch_size}, shuffle={self.shuffle}, "
                f"drop_last={self.drop_last}, transform={self.transform!r}, device={self.device!r})")


def _get_batch(dataset, idx):
    """A batch as a tuple of arrays: the dataset's fast path if it has one."""
    fields = dataset.get_batch(idx) if hasattr(dataset, "get_batch") else collate([dataset[int(i)] for i in idx])
    return fields if isinstance(fields, tuple) else (fields,)


_DONE = object()


def _in_background(iterable, depth):
    """Run `iterable` in a thread, `depth` items ahead of the consumer.

    The queue's maxsize bounds how far ahead it runs (and the memory it holds).
    An exception in the thread is passed through the queue and re-raised here; if
    the consumer stops early (a `break`), the thread is told to stop and joined.
    """
    q = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item):
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                pass
        return False

    def work():
        try:
            for item in iterable:
                if not put(item):
                    return
            put(_DONE)
        except BaseException as e:  # hand it to the consumer, which re-raises it
            put(e)

    thread = threading.Thread(target=work, name="DataLoader-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item = q.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while thread.is_alive():  # unblock a pending put, then wait for the thread
            try:
                q.get_nowait()
            except queue.Empty:
                pass
            thread.join(timeout=0.05)
