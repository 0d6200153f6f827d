"""The NCCL process group: one communicator over all ranks, through CuPy's binding of NCCL
(imported here, when a group is made, so CPU machines never need CuPy)."""
from .rendezvous import share

# NCCL's ncclDataType_t by NumPy dtype name (bool travels as bytes)
NCCL_TYPES = {"int8": 0, "uint8": 1, "bool": 1, "int32": 2, "uint32": 3, "int64": 4, "uint64": 5, "float16": 6,
              "float32": 7, "float64": 8, "bfloat16": 9}


class NcclGroup:
    """The ranks of `env` (a `process_group.Environment`), this process's on its first visible GPU."""

    def __init__(self, env, timeout):
        import cupy
        from cupy.cuda import nccl
        self.cupy, self.nccl, self.rank, self.size = cupy, nccl, env.rank, env.world_size
        visible = cupy.cuda.runtime.getDeviceCount()
        if visible > 1:
            raise RuntimeError(f"rank {env.rank} sees {visible} GPUs and mytensor's 'cuda' is the first of them: give "
                               f"each process one GPU (CUDA_VISIBLE_DEVICES), as `python -m mytensor.distributed.run` "
                               f"does")
        # NCCL's unique id: 128 bytes (CuPy hands them out as bytes, or as signed chars in older versions)
        uid = bytes(v & 0xFF for v in nccl.get_unique_id()) if env.rank == 0 else b""
        uid = share(uid, env.master_addr, env.master_port, env.rank, env.world_size, timeout)
        self.comm = nccl.NcclCommunicator(self.size, uid, self.rank)

    def all_reduce(self, array, stream=None):
        self._run(array, stream, lambda ptr, n, kind, s: self.comm.allReduce(ptr, ptr, n, kind, self.nccl.NCCL_SUM, s))

    def broadcast(self, array, src, stream=None):
        self._run(array, stream, lambda ptr, n, kind, s: self.comm.bcast(ptr, n, kind, src, s))

    def barrier(self):
        """An all-reduce of one number, waited for."""
        self.all_reduce(self.cupy.zeros(1, self.cupy.float32))
        self.cupy.cuda.get_current_stream().synchronize()

    def close(self):
        self.comm.destroy()

    def _run(self, array, stream, call):
        """`call(pointer, count, type, stream)` on the array's memory (a contiguous copy for another layout),
        queued on `stream` (a CuPy stream; None: the current one)."""
        if not array.size:
            return
        dense = array if array.flags.c_contiguous else self.cupy.ascontiguousarray(array)
        stream = stream or self.cupy.cuda.get_current_stream()
        call(dense.data.ptr, dense.size, NCCL_TYPES[dense.dtype.name], stream.ptr)
        if dense is not array:
            array[...] = dense
