"""`torch.backends.cuda`: `matmul.allow_tf32` is another spelling of
`set_float32_matmul_precision`: True lets float32 matrix products (linear layers,
convolutions through im2col) run on TF32 tensor cores; False (the default, as in
PyTorch) keeps them strict FP32.
"""
from ..backend import matmul_precision


class _Matmul:
    @property
    def allow_tf32(self):
        return matmul_precision.allows_tf32()

    @allow_tf32.setter
    def allow_tf32(self, value):
        matmul_precision.set_float32_matmul_precision("high" if value else "highest")


matmul = _Matmul()
