"""nn_gpu: a digit-recognising network with every equation of backpropagation written by hand.

The same forward and backward code runs on NumPy (CPU) or CuPy (GPU, with custom CUDA kernels).
Start with nn_gpu/model.py.
"""

__version__ = "0.1.0"
