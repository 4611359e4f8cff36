"""Input checks of nn_gpu.MLPClassifier, worded as scikit-learn's check_array and check_X_y word theirs,
so that what users and scikit-learn's own estimator checks know still applies; and the exceptions
and warnings it raises, which are scikit-learn's own classes when scikit-learn is loaded."""

from __future__ import annotations

import contextlib
import numbers
import sys
import warnings

import numpy as np

from nn_gpu.data import rows_to_device


class DataConversionWarning(UserWarning):
    """A column-vector y was ravelled (sklearn's warning of the same name has the same base)."""


def sklearns(name: str, ours: type) -> type:
    """sklearn's exception or warning class `name` when sklearn is loaded (so that `except` and warning
    filters written against sklearn's catch it), else nn_gpu's own, with the same bases; never imports sklearn."""
    exceptions = sys.modules.get("sklearn.exceptions")
    return getattr(exceptions, name, ours) if exceptions is not None else ours


def seed_of(random_state) -> int:
    """An int seed from sklearn's random_state: None (fresh each fit), an int, or a RandomState/Generator."""
    if random_state is None:
        return int(np.random.default_rng().integers(2**31))
    if isinstance(random_state, numbers.Integral):
        return int(random_state)
    if isinstance(random_state, np.random.RandomState):
        return int(random_state.randint(2**31))
    if isinstance(random_state, np.random.Generator):
        return int(random_state.integers(2**31))
    raise ValueError(f"random_state must be None, an int, or a numpy RandomState or Generator; got {random_state!r}")


def check_X(X, finite: bool = True) -> np.ndarray:
    """X as a 2-D floating array of at least one sample and one feature, finite unless finite=False (fit
    checks that on the device: X_on_device), or the error sklearn's check_array gives (same wording, so
    what users and sklearn's checks know still applies)."""
    if type(X).__module__.startswith("scipy.sparse"):
        raise TypeError("Sparse data was passed, but dense data is required: pass X.toarray().")
    if type(X).__module__.startswith("pandas"):  # nullable columns (Int64, Float64): pd.NA becomes NaN, refused below
        with contextlib.suppress(TypeError, ValueError):
            X = X.to_numpy(dtype=np.float64, na_value=np.nan)
    X = np.asarray(X)
    if X.dtype.kind == "c":
        raise ValueError("Complex data not supported")
    if X.dtype.kind != "f":  # floating X is kept as it is, not copied: the network casts it once to its dtype
        X = X.astype(np.float64)  # integers, booleans, or objects that are numbers (TypeError otherwise)
    if X.ndim != 2:
        raise ValueError(
            f"Expected 2D array, got {X.ndim}D array instead. Reshape your data either using "
            "array.reshape(-1, 1) if your data has a single feature or array.reshape(1, -1) if it contains a "
            "single sample."
        )
    for axis, what in ((0, "sample(s)"), (1, "feature(s)")):
        if X.shape[axis] < 1:
            raise ValueError(f"Found array with 0 {what} (shape={X.shape}) while a minimum of 1 is required.")
    if finite and not np.isfinite(X).all():
        what = "NaN" if np.isnan(X).any() else "infinity or a value too large for dtype('float64')"
        raise ValueError(f"Input X contains {what}.")
    return X


def X_on_device(X: np.ndarray, device, dtype: str):
    """X (n x d rows) on the device as the network takes it (d x n, in dtype), checked there: the error
    sklearn's check_array gives for NaN, or for infinity, which includes values beyond dtype's range."""
    with np.errstate(over="ignore"):  # a value beyond dtype's range becomes infinity, refused just below
        X_device = rows_to_device(X, device, dtype)
    xp = device.xp
    if not bool(xp.isfinite(X_device).all()):  # host sync: one number, once a fit
        what = "NaN" if bool(xp.isnan(X_device).any()) else f"infinity or a value too large for dtype('{dtype}')"
        raise ValueError(f"Input X contains {what}.")
    return X_device


def check_X_y(X, y, finite: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """X checked as check_X, and y as n class labels (a column vector ravelled with a warning)."""
    if y is None:
        raise ValueError("MLPClassifier requires y to be passed, but the target y is None.")
    X = check_X(X, finite)
    y = np.asarray(y)
    if y.dtype.kind == "c":
        raise ValueError("Complex data not supported")
    if y.ndim == 2 and y.shape[1] == 1:
        warnings.warn(
            sklearns("DataConversionWarning", DataConversionWarning)(
                "A column-vector y was passed when a 1d array was expected. Please change the shape of y to "
                "(n_samples, ), for example using ravel()."
            ),
            stacklevel=3,
        )
        y = y.ravel()
    if y.ndim != 1:
        raise ValueError(f"y should be a 1d array, got an array of shape {y.shape} instead.")
    if len(y) != len(X):
        raise ValueError(f"Found input variables with inconsistent numbers of samples: [{len(X)}, {len(y)}]")
    if y.dtype.kind == "f":
        if not np.isfinite(y).all():
            raise ValueError(f"Input y contains {'NaN' if np.isnan(y).any() else 'infinity'}.")
        if (y % 1 != 0).any():
            raise ValueError(
                "Unknown label type: continuous. Maybe you are trying to fit a classifier, which expects discrete "
                "classes on a regression target with continuous values."
            )
    if y.dtype.kind == "O":
        kinds = {type(v) for v in y}
        if len(kinds) > 1 and not all(issubclass(k, numbers.Integral) for k in kinds):
            raise ValueError(f"Unknown label type: labels mix {sorted(k.__name__ for k in kinds)}")
    return X, y
