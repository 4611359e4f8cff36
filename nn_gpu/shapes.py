"""The digit task's sizes, in a module of their own that imports nothing: a 28 x 28 picture is
N_PIXELS inputs, and its classes 0..9 are N_CLASSES outputs. The model, the data readers and the CUDA
sources all read them here."""

SIDE = 28
N_PIXELS = SIDE * SIDE  # 784
N_CLASSES = 10
