"""The benchmark behind scripts/bench.py, by job.

implementations  what is compared: the notebook's NumPy code, nn_gpu (graphed, eager and fused), PyTorch
timing         timing steps (synchronised, warmed up, medians), step memory, a busy core
workloads      the speed workloads: training steps, CSV loading, the products floor, time to 85%
accuracy       the accuracy comparison with PyTorch over seeds, on the data given with --data
estimators     --estimators: nn_gpu.MLPClassifier against scikit-learn's and PyTorch
perf           --perf: the training step eager and as CUDA graphs against PyTorch eager and graphed
torch_step     PyTorch's training step as a speed-minded user writes it, eager or in a CUDA graph
ladder         scripts/ladder.py: the accuracy ladder
"""
