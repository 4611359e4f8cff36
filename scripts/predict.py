"""Predict digits with a trained model: `python scripts/predict.py --model DIR/model.npz --data test.csv`."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from nn_gpu.predict import predict_main  # noqa: E402

if __name__ == "__main__":
    sys.exit(predict_main())
