"""mytensor against PyTorch: single ops, end-to-end training and memory.

    python -m benchmarks --device cpu|cuda [--quick] [--out DIR] [--only ops|e2e|memory]

PyTorch is needed only here (`pip install -e '.[bench]'`); without it the
suite times mytensor alone.
"""
