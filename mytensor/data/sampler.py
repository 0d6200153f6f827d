"""Samplers: the order in which a DataLoader visits a dataset, as in `torch.utils.data`.

A sampler is any iterable of indices (with a `len`); a batch sampler yields lists of
indices. The random ones draw from a `mytensor.Generator` if given, else from the CPU
backend's generator, so `mytensor.manual_seed` makes them repeat.
"""
import numpy as np

from .. import distributed
from ..random import default_rng


class Sampler:
    def __init__(self, data_source=None):
        pass

    def __iter__(self):
        raise NotImplementedError(f"{type(self).__name__} must define __iter__")


class SequentialSampler(Sampler):
    def __init__(self, data_source):
        self.data_source = data_source

    def __iter__(self):
        return iter(range(len(self.data_source)))

    def __len__(self):
        return len(self.data_source)


class RandomSampler(Sampler):
    """A fresh permutation per pass (or `num_samples` draws with replacement)."""

    def __init__(self, data_source, replacement=False, num_samples=None, generator=None):
        self.data_source, self.replacement, self.generator = data_source, replacement, generator
        self._num_samples = num_samples

    @property
    def num_samples(self):
        return len(self.data_source) if self._num_samples is None else self._num_samples

    def __iter__(self):
        rng, n = default_rng(self.generator), len(self.data_source)
        if self.replacement:
            return iter(rng.integers(0, n, self.num_samples).tolist())
        reps = -(-self.num_samples // n) if n else 0
        return iter(np.concatenate([rng.permutation(n) for _ in range(reps)] or [np.zeros(0, np.int64)])
                    [:self.num_samples].tolist())

    def __len__(self):
        return self.num_samples


class SubsetRandomSampler(Sampler):
    def __init__(self, indices, generator=None):
        self.indices, self.generator = list(indices), generator

    def __iter__(self):
        order = default_rng(self.generator).permutation(len(self.indices))
        return iter([self.indices[i] for i in order])

    def __len__(self):
        return len(self.indices)


class WeightedRandomSampler(Sampler):
    """`num_samples` indices drawn with probability proportional to `weights`."""

    def __init__(self, weights, num_samples, replacement=True, generator=None):
        self.weights = np.asarray(weights, dtype=np.float64)
        self.num_samples, self.replacement, self.generator = int(num_samples), replacement, generator

    def __iter__(self):
        p = self.weights / self.weights.sum()
        return iter(default_rng(self.generator).choice(len(p), self.num_samples, replace=self.replacement,
                                                       p=p).tolist())

    def __len__(self):
        return self.num_samples


def shard_positions(n, num_replicas, rank, drop_last=False):
    """The places in an epoch of `n` that rank `rank` of `num_replicas` takes, as PyTorch's
    DistributedSampler: every num_replicas-th from `rank`, the epoch first cut to a multiple of
    num_replicas (drop_last) or lengthened to one by starting it over (so every rank gets as many)."""
    if not 0 <= rank < num_replicas:
        raise ValueError(f"Invalid rank {rank}, rank should be in the interval [0, {num_replicas - 1}]")
    per_rank = n // num_replicas if drop_last else -(-n // num_replicas)
    return (np.arange(per_rank * num_replicas) % max(n, 1))[rank::num_replicas]


class DistributedSampler(Sampler):
    """Rank `rank`'s share of a dataset split among `num_replicas` processes (default: those of the
    process group). Every rank draws the same permutation, from `seed + epoch` (call `set_epoch`
    before each epoch), and takes its places of it (`shard_positions`), so the shards are equal and
    disjoint up to the few indices that pad them."""

    def __init__(self, dataset, num_replicas=None, rank=None, shuffle=True, seed=0, drop_last=False):
        self.num_replicas = distributed.get_world_size() if num_replicas is None else int(num_replicas)
        self.rank = distributed.get_rank() if rank is None else int(rank)
        self.dataset, self.shuffle, self.seed, self.drop_last, self.epoch = dataset, shuffle, int(seed), drop_last, 0
        self.positions = shard_positions(len(dataset), self.num_replicas, self.rank, drop_last)

    def __iter__(self):
        n = len(self.dataset)
        order = np.random.default_rng(self.seed + self.epoch).permutation(n) if self.shuffle else np.arange(n)
        return iter(order[self.positions].tolist())

    def __len__(self):
        return len(self.positions)

    def set_epoch(self, epoch):
        self.epoch = int(epoch)


class BatchSampler(Sampler):
    """Group another sampler's indices into lists of `batch_size`."""

    def __init__(self, sampler, batch_size, drop_last):
        self.sampler, self.batch_size, self.drop_last = sampler, int(batch_size), drop_last

    def __iter__(self):
        batch = []
        for i in self.sampler:
            batch.append(i)
            if len(batch) == self.batch_size:
                yield batch
                batch = []
        if batch and not self.drop_last:
            yield batch

    def __len__(self):
        n = len(self.sampler)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)
