"""The benchmark behind scripts/bench.py, by job.

implementations  what is compared: the notebook's NumPy code, nn_gpu (plain and fused), PyTorch
timing         timing steps (synchronised, warmed up, medians), step memory, a busy core
workloads      the speed workloads: training steps, CSV loading, the products floor, time to 85%
accuracy       the accuracy comparison with PyTorch over seeds, on the data given with --data
"""
