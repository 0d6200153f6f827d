"""CUDA graphs: a function's launches recorded once and replayed with one launch."""


class CUDAGraph:
    """One call of `fn` recorded as a CUDA graph: `replay()` reruns every
    kernel it launched with a single launch, on the same memory.

    Arrays allocated while recording come from a memory pool of the graph's
    own, so the memory its kernels reuse between replays is never handed to
    anything else. `outputs` holds what `fn` returned; each replay rewrites it.
    """

    def __init__(self, cupy, fn):
        self.cupy = cupy
        rt = cupy.cuda.runtime
        self.pool = cupy.cuda.MemoryPool()
        stream = cupy.cuda.Stream(non_blocking=True)
        stream.wait_event(cupy.cuda.get_current_stream().record())  # start after the queued work
        with cupy.cuda.using_allocator(self.pool.malloc), stream:
            rt.streamBeginCapture(stream.ptr, rt.streamCaptureModeRelaxed)
            try:
                self.outputs = fn()
            except BaseException:
                try:
                    rt.graphDestroy(rt.streamEndCapture(stream.ptr))
                except rt.CUDARuntimeError:
                    pass  # CUDA invalidated the capture: there is no graph to destroy
                raise
            graph = rt.streamEndCapture(stream.ptr)
        try:
            self._exec = rt.graphInstantiate(graph)
        finally:
            rt.graphDestroy(graph)

    def replay(self):
        self.cupy.cuda.runtime.graphLaunch(self._exec, self.cupy.cuda.get_current_stream().ptr)

    def __del__(self):
        if getattr(self, "_exec", None) is not None:
            self.cupy.cuda.runtime.graphExecDestroy(self._exec)
