"""Predict digits with a trained model: `python scripts/predict.py --model DIR/model.npz --data test.csv`."""

import sys

from launch import launch

if __name__ == "__main__":
    sys.exit(launch("nn_gpu.commands.predict", "predict_main"))
