"""Data-parallel training on the CPU: the environment a process group reads, the rendezvous, the
collectives, DistributedDataParallel over ranks simulated by threads (`thread_group.py`: its averaged
gradients are those of the combined batch) and DistributedSampler against PyTorch's."""
import threading
import types

import numpy as np
import pytest
import torch

import mytensor as mt
import mytensor.distributed as dist
from mytensor import nn
from mytensor.data import DeviceLoader, DistributedSampler
from mytensor.distributed.data_parallel import MB, bucket_assignment
from mytensor.distributed.process_group import environment
from mytensor.distributed.rendezvous import share
from mytensor.distributed.run import free_port
from mytensor.nn.parallel import DistributedDataParallel
from thread_group import run_ranks

ENV = {"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500"}


def test_environment_is_read_and_each_problem_names_its_variable(monkeypatch):
    for k, v in ENV.items():
        monkeypatch.setenv(k, v)
    env = environment()
    assert (env.rank, env.world_size, env.local_rank, env.master_addr, env.master_port) == (1, 2, 1, "127.0.0.1", 29500)
    assert environment(rank=0, world_size=4).rank == 0
    for name, value, message in [("MASTER_ADDR", None, "MASTER_ADDR is not set"),
                                 ("WORLD_SIZE", None, "WORLD_SIZE is not set"),
                                 ("RANK", "two", "RANK='two' is not a whole number"),
                                 ("RANK", "2", "RANK 2 must be from 0 to WORLD_SIZE - 1 = 1"),
                                 ("MASTER_PORT", "70000", "MASTER_PORT=70000 is not a TCP port"),
                                 ("LOCAL_RANK", "-1", "LOCAL_RANK=-1 must be 0 or more")]:
        with monkeypatch.context() as m:
            if value is None:
                m.delenv(name)
            else:
                m.setenv(name, value)
            with pytest.raises((RuntimeError, ValueError), match=message):
                environment()


def test_init_process_group_refuses_other_backends_and_collectives_need_a_group():
    with pytest.raises(ValueError, match="nccl"):
        dist.init_process_group("gloo")
    assert not dist.is_initialized()
    with pytest.raises(RuntimeError, match="init_process_group"):
        dist.get_rank()


def test_rendezvous_hands_rank_0s_bytes_to_every_rank():
    port, got = free_port(), [None] * 3

    def rank(r):
        got[r] = share(b"the id" if r == 0 else b"", "127.0.0.1", port, r, 3, timeout=30)

    threads = [threading.Thread(target=rank, args=(r,)) for r in (2, 1, 0)]  # the others before rank 0 listens
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert got == [b"the id"] * 3


def test_all_reduce_and_broadcast():
    def body(group):
        x = mt.tensor([1.0, 2.0]) * (group.rank + 1)
        total, mean, first = x.clone(), x.clone(), x.clone()
        dist.all_reduce(total, group=group)
        dist.all_reduce(mean, op=dist.ReduceOp.AVG, group=group)
        dist.broadcast(first, src=1, group=group)
        dist.barrier(group=group)
        return total.tolist(), mean.tolist(), first.tolist(), dist.get_rank(group), dist.get_world_size(group)

    a, b = run_ranks(body, 2)
    assert a[:3] == b[:3] == ([3.0, 6.0], [1.5, 3.0], [2.0, 4.0])
    assert (a[3:], b[3:]) == ((0, 2), (1, 2))


def test_buckets_go_from_the_last_parameter_to_the_first_and_close_at_the_cap():
    mib = [0.25, 1.5, 0.5, 0.5, 1, 0.25]
    params = [nn.Parameter(mt.zeros(int(m * MB) // 4)) for m in mib]  # float32s
    # the first bucket closes at 1 MiB or more (indices 5 and 4: 1.25 MiB), the others at 2 MiB
    assert bucket_assignment(params, 2, first_bucket_mb=1) == [[5, 4], [3, 2, 1], [0]]
    assert bucket_assignment(params, 2) == [[5, 4, 3, 2], [1, 0]]
    assert bucket_assignment(params, 100) == [[5, 4, 3, 2, 1, 0]]
    mixed = params[:2] + [nn.Parameter(mt.zeros(MB // 4, dtype=mt.float64))]
    assert bucket_assignment(mixed, 2, first_bucket_mb=1) == [[2], [1, 0]]


def mlp():
    return nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 8), nn.Tanh(), nn.Linear(8, 3)).double()


def batch(n=8, seed=0):
    rng = np.random.default_rng(seed)
    return mt.tensor(rng.normal(size=(n, 6))), mt.tensor(rng.integers(0, 3, n))


def grads(model):
    return [p.grad.numpy().copy() for p in model.parameters()]


def test_averaged_gradients_are_those_of_the_combined_batch():
    """Two replicas (the second initialised differently, then given rank 0's weights), each on half
    of a batch, against one model on the whole batch."""
    mt.manual_seed(0)
    replicas = [mlp(), mlp()]
    reference = mlp()
    reference.load_state_dict(replicas[0].state_dict())
    x, y = batch()
    nn.functional.cross_entropy(reference(x), y).backward()

    def body(group):
        model = DistributedDataParallel(replicas[group.rank], process_group=group, bucket_cap_mb=0.0005)
        half = slice(4 * group.rank, 4 * group.rank + 4)
        for _ in range(2):  # the second step sees the buckets reset by the first
            model.zero_grad()
            nn.functional.cross_entropy(model(x[half]), y[half]).backward()
        return grads(model), group.sizes

    (g0, sizes0), (g1, sizes1) = run_ranks(body, 2)
    for a, b, want in zip(g0, g1, grads(reference)):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_allclose(a, want, rtol=1e-12, atol=1e-14)
    # parameters of 96, 16, 128, 8, 24 and 3 float64s; a bucket closes at 524 bytes or more
    assert sizes0 == sizes1 == [3 + 24 + 8 + 128, 16 + 96] * 2


def test_no_sync_keeps_gradients_local_until_the_next_synced_backward():
    mt.manual_seed(1)
    replicas = [mlp(), mlp()]
    x, y = batch(16, seed=1)

    def body(group):
        model = DistributedDataParallel(replicas[group.rank], process_group=group)
        rows = [slice(8 * group.rank + 4 * k, 8 * group.rank + 4 * k + 4) for k in range(2)]
        with model.no_sync():
            nn.functional.cross_entropy(model(x[rows[0]]), y[rows[0]]).backward()
        local = grads(model)
        nn.functional.cross_entropy(model(x[rows[1]]), y[rows[1]]).backward()
        return local, grads(model)

    (local0, synced0), (local1, synced1) = run_ranks(body, 2)
    assert not np.array_equal(local0[0], local1[0])
    for a, b, l0, l1 in zip(synced0, synced1, local0, local1):
        np.testing.assert_array_equal(a, b)
    # every rank ends with the mean over the ranks of its two accumulated backwards
    reference = mlp()
    reference.load_state_dict(replicas[0].state_dict())
    for r in range(2):
        for k in range(2):
            rows = slice(8 * r + 4 * k, 8 * r + 4 * k + 4)
            (nn.functional.cross_entropy(reference(x[rows]), y[rows]) / 2).backward()
    for a, want in zip(synced0, grads(reference)):
        np.testing.assert_allclose(a, want, rtol=1e-12, atol=1e-14)


def test_construction_broadcasts_rank_0s_state_and_keeps_pytorchs_keys():
    mt.manual_seed(2)
    replicas = [nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4)) for _ in range(2)]
    replicas[1][1].running_mean.fill_(5.0)

    def body(group):
        model = DistributedDataParallel(replicas[group.rank], process_group=group)
        assert model.module is replicas[group.rank]
        return {k: np.array(v) for k, v in model.state_dict().items()}

    s0, s1 = run_ranks(body, 2)
    assert list(s0) == ["module." + k for k in replicas[0].state_dict()]
    for k in s0:
        np.testing.assert_array_equal(s0[k], s1[k])
    assert not s0["module.1.running_mean"].any()


def test_a_parameter_without_gradient_is_an_error_at_the_next_forward():
    class TwoHeads(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(2, 1), nn.Linear(2, 1)

        def forward(self, x):
            return self.a(x)

    def body(group):
        model = DistributedDataParallel(TwoHeads(), process_group=group, bucket_cap_mb=1e-6)
        model(mt.ones(1, 2)).sum().backward()
        with pytest.raises(RuntimeError, match=r"no gradient to b\.weight, b\.bias"):
            model(mt.ones(1, 2))

    run_ranks(body, 2)


@pytest.mark.parametrize("n, replicas, drop_last", [(10, 3, False), (10, 3, True), (9, 3, False), (2, 4, False),
                                                    (1, 3, False), (11, 4, True), (7, 1, False)])
def test_distributed_sampler_shards_as_pytorchs(n, replicas, drop_last):
    data = list(range(n))
    for rank in range(replicas):
        ours = DistributedSampler(data, replicas, rank, shuffle=False, drop_last=drop_last)
        theirs = torch.utils.data.DistributedSampler(data, replicas, rank, shuffle=False, drop_last=drop_last)
        assert list(ours) == list(theirs) and len(ours) == len(theirs)
        shuffled = DistributedSampler(data, replicas, rank, drop_last=drop_last)
        assert len(list(shuffled)) == len(theirs)


def test_distributed_sampler_shuffles_the_same_permutation_on_every_rank_per_epoch():
    def shards(epoch):
        samplers = [DistributedSampler(range(10), 3, r, seed=4) for r in range(3)]
        for s in samplers:
            s.set_epoch(epoch)
        return [list(s) for s in samplers]

    first = shards(0)
    assert first == shards(0) and first != shards(1)
    order = [first[r][k] for k in range(4) for r in range(3)]  # interleaved back: the permutation, padded
    assert sorted(order[:10]) == list(range(10)) and order[10:] == order[:2]


def test_distributed_sampler_takes_rank_and_replicas_from_the_default_group():
    with pytest.raises(RuntimeError, match="init_process_group"):
        DistributedSampler(range(4))
    with pytest.raises(ValueError, match="rank"):
        DistributedSampler(range(4), num_replicas=2, rank=2)


def test_device_loader_ranks_see_equal_shards_of_the_epoch():
    images = np.arange(10 * 3 * 4 * 4, dtype=np.uint8).reshape(10, 3, 4, 4)
    dataset = types.SimpleNamespace(images=images, targets=np.arange(10), normalization=((0, 0, 0), (1, 1, 1)))
    whole = DeviceLoader(dataset, batch_size=3, shuffle=True, seed=5, translate=1, flip="random")
    shards = [DeviceLoader(dataset, batch_size=3, shuffle=True, seed=5, translate=1, flip="random", num_replicas=3,
                           rank=r) for r in range(3)]
    assert [len(s) for s in shards] == [2, 2, 2]
    full = np.concatenate([x.numpy() for x, _ in whole])
    full = np.concatenate([full, full[:2]])  # padded to 12 with the epoch's first images
    for r, loader in enumerate(shards):
        got = np.concatenate([x.numpy() for x, _ in loader])
        np.testing.assert_array_equal(got, full[r::3])
