"""For tests only: a process group whose ranks are threads of this process, so the logic of
data-parallel training runs on the CPU. `run_ranks(fn, n)` calls `fn(group)` in n threads, each
with the group of its rank, and returns their results in rank order."""
import threading


class ThreadGroup:
    """The `process_group` protocol (rank, size, all_reduce, broadcast, barrier, close) on NumPy
    arrays; every call waits for the same call of the other ranks. `sizes` records the element
    count of each all-reduce, in order."""

    def __init__(self, rank, size, shared):
        self.rank, self.size, self.shared, self.sizes = rank, size, shared, []

    def _exchange(self, value):
        self.shared["slots"][self.rank] = value
        self.shared["barrier"].wait()
        values = list(self.shared["slots"])
        self.shared["barrier"].wait()
        return values

    def all_reduce(self, array, stream=None):
        self.sizes.append(array.size)
        values = self._exchange(array.copy())
        array[...] = sum(values[1:], values[0])

    def broadcast(self, array, src, stream=None):
        array[...] = self._exchange(array.copy())[src]

    def barrier(self):
        self._exchange(None)

    def close(self):
        pass


def thread_groups(n):
    shared = {"slots": [None] * n, "barrier": threading.Barrier(n, timeout=120)}
    return [ThreadGroup(rank, n, shared) for rank in range(n)]


def run_ranks(fn, n=2):
    """fn(group) on each of n thread ranks; the first failure is raised here (the others stop at
    their next collective, since the barrier is broken)."""
    groups, results, errors = thread_groups(n), [None] * n, []

    def body(rank):
        try:
            results[rank] = fn(groups[rank])
        except BaseException as e:  # noqa: BLE001 (raised again below, in the caller's thread)
            errors.append(e)
            groups[rank].shared["barrier"].abort()

    threads = [threading.Thread(target=body, args=(r,)) for r in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return results
