"""Draw a digit and watch the network think: `python scripts/serve.py --model DIR/model.npz`, then open the URL it prints."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from nn_gpu.serve import serve_main  # noqa: E402

if __name__ == "__main__":
    sys.exit(serve_main())
