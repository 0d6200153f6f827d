"""How float32 matrix products may run on GPUs, as PyTorch's `set_float32_matmul_precision`:
"highest" (the default) is strict FP32; "high" and "medium" allow TF32 tensor cores, whose
10-bit mantissas give products near 3e-4 relative error at several times the speed."""
_CHOICES = ("highest", "high", "medium")
_precision = ["highest"]


def set_float32_matmul_precision(precision):
    if precision not in _CHOICES:
        raise ValueError(f"set_float32_matmul_precision: expected one of {', '.join(_CHOICES)}, got {precision!r}")
    _precision[0] = precision


def get_float32_matmul_precision():
    return _precision[0]


def allows_tf32():
    return _precision[0] != "highest"
