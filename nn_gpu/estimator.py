"""nn_gpu.MLPClassifier: the hand-written network behind scikit-learn's estimator interface, on the GPU or the CPU.

    from nn_gpu import MLPClassifier
    clf = MLPClassifier(hidden_layer_sizes=(256,), max_iter=20, random_state=0, device="auto")
    clf.fit(X, y)                  # X: n x d (rows as samples, sklearn's layout), y: any labels
    clf.predict(X_test); clf.predict_proba(X_test); clf.score(X_test, y_test)

It follows scikit-learn's conventions (constructor parameters stored as given, fitted attributes
ending in _, get_params/set_params, clone, Pipeline, GridSearchCV, check_estimator), and its
parameters are named as sklearn.neural_network.MLPClassifier's wherever they mean the same:

    hidden_layer_sizes, solver ("adam" or "sgd"; also "adamw"), alpha (L2 penalty), batch_size
    ("auto": min(200, n)), learning_rate_init, max_iter (epochs), momentum (sgd), beta_1, beta_2,
    epsilon (adam), random_state, tol, n_iter_no_change, early_stopping, validation_fraction, verbose

and `device` ("auto", "cpu", "gpu", "gpu:N") and `dtype` ("float32" or "float64") are nn_gpu's own.
Fitted: classes_, n_features_in_, coefs_ and intercepts_ (W_l^T, n_{l-1} x n_l, and b_l, n_l, as
sklearn's), loss_curve_, n_iter_, t_, best_loss_ (or validation_scores_ and best_validation_score_
with early_stopping), n_layers_, n_outputs_, out_activation_ ("softmax").

Where it differs from sklearn's, on purpose or by design:
- The output layer is a softmax over C units for every C, two classes included (sklearn uses one
  logistic unit there), so coefs_[-1] is n_{L-1} x C and predict_proba's columns are always classes_.
- alpha adds alpha W / batch to each step's gradient, as sklearn's does, but to the biases too (nn_gpu's
  optimisers decay the whole flat buffer); the reported loss leaves the penalty out. With "adamw",
  alpha / batch is the decoupled weight decay instead.
- Weights start from He's N(0, 2 / n_in) with zero biases (sklearn: Glorot's uniform, and random biases).
- X is dense: sparse X is refused, with the fix (X.toarray()); y holds one label per row: a multilabel
  y (n x k indicator matrix) is refused (sklearn's MLPClassifier takes both).
- sgd's momentum is classical (PyTorch's); nesterovs_momentum, learning_rate schedules, lbfgs,
  activation and warm_start are not offered.
- Training stops as sklearn's does: after n_iter_no_change epochs in a row whose loss did not fall
  below the best by tol (or, with early_stopping, whose validation accuracy did not rise above the
  best by tol; then the best weights are kept). The validation split is random, not stratified.
- Training is nn_gpu.training.train, the loop of train.py: one set of equations on NumPy or CuPy,
  the same numbers from the same random_state on one device.

scikit-learn is not needed to use it: input checks and messages follow sklearn's own, written here,
and `__sklearn_tags__` imports sklearn only when sklearn itself asks for the tags.
"""

from __future__ import annotations

import inspect
import math

import numpy as np

from nn_gpu import training
from nn_gpu.architecture import DTYPES, Architecture, init_parameters
from nn_gpu.config import NON_NEGATIVE, POSITIVE, PROBABILITY, WHOLE, Interval
from nn_gpu.device import resolve_device
from nn_gpu.estimator_checks import (
    X_on_device,
    check_X,
    check_X_y,
    seed_of,
    sklearns,
)
from nn_gpu.model import Network
from nn_gpu.optim import SGD, Adam

SOLVERS = ("adam", "adamw", "sgd")
INTERVALS = {  # the real parameters' ranges, as scikit-learn's _parameter_constraints (nn_gpu.config's Interval)
    "learning_rate_init": POSITIVE,
    "epsilon": POSITIVE,
    "alpha": NON_NEGATIVE,
    "tol": NON_NEGATIVE,
    "momentum": PROBABILITY,  # sklearn allows 1, which never lets a gradient fade
    "beta_1": PROBABILITY,
    "beta_2": PROBABILITY,
    "validation_fraction": Interval(0, 1, "()"),
}


class NotFittedError(ValueError, AttributeError):
    """predict, predict_proba or score before fit (sklearn's NotFittedError has the same bases)."""


class MLPClassifier:
    """A multilayer perceptron classifier trained with nn_gpu's hand-written backpropagation (module docstring)."""

    def __init__(
        self,
        hidden_layer_sizes=(100,),
        solver="adam",
        alpha=0.0001,
        batch_size="auto",
        learning_rate_init=0.001,
        max_iter=200,
        momentum=0.9,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-8,
        random_state=None,
        tol=1e-4,
        n_iter_no_change=10,
        early_stopping=False,
        validation_fraction=0.1,
        verbose=False,
        device="auto",
        dtype="float32",
    ):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate_init = learning_rate_init
        self.max_iter = max_iter
        self.momentum = momentum
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.random_state = random_state
        self.tol = tol
        self.n_iter_no_change = n_iter_no_change
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.verbose = verbose
        self.device = device
        self.dtype = dtype

    # scikit-learn's estimator protocol, without scikit-learn

    @classmethod
    def _parameter_names(cls) -> list[str]:
        return [name for name in inspect.signature(cls.__init__).parameters if name != "self"]

    def get_params(self, deep: bool = True) -> dict:
        """The constructor parameters as they were given (deep is accepted for sklearn; there are no sub-estimators)."""
        return {name: getattr(self, name) for name in self._parameter_names()}

    def set_params(self, **params) -> MLPClassifier:
        """Set constructor parameters by name; ValueError naming an unknown one."""
        valid = self._parameter_names()
        for name, value in params.items():
            if name not in valid:
                raise ValueError(f"Invalid parameter {name!r} for estimator {self!r}. Valid parameters are: {valid!r}.")
            setattr(self, name, value)
        return self

    def __repr__(self) -> str:
        defaults = {name: p.default for name, p in inspect.signature(type(self).__init__).parameters.items()}
        changed = [f"{k}={v!r}" for k, v in self.get_params().items() if not _same(v, defaults[k])]
        return f"{type(self).__name__}({', '.join(changed)})"

    def __sklearn_tags__(self):
        from sklearn.utils import ClassifierTags, InputTags, Tags, TargetTags  # sklearn is asking: it is there

        return Tags(
            estimator_type="classifier",
            target_tags=TargetTags(required=True),
            classifier_tags=ClassifierTags(),
            input_tags=InputTags(),
        )

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "_network")

    def __getstate__(self) -> dict:
        """For pickle and deepcopy: the network and the optimiser's moments as host arrays (both are
        rebuilt on `device` when unpickled, so partial_fit goes on exactly as it would have)."""
        state = self.__dict__.copy()
        network, optimizer = state.pop("_network", None), state.pop("_optimizer", None)
        if network is not None:
            to_host = network.device.to_host
            moments = None if optimizer is None else [to_host(moment) for moment in optimizer.state]
            state["_saved"] = (network.arch, [to_host(p) for p in network.arrays], moments)
        return state

    def __setstate__(self, state: dict) -> None:
        saved = state.pop("_saved", None)
        self.__dict__.update(state)
        if saved is not None:
            arch, params, moments = saved
            self._network = Network(arch, resolve_device(self.device), params)
            self._optimizer = None if moments is None else self._new_optimizer(moments)

    # fitting

    def fit(self, X, y) -> MLPClassifier:
        """Train a new network on X (n x d, rows as samples) and labels y (n, any integers or strings)
        for up to max_iter epochs; returns self. X is checked on the device, after its one upload."""
        X, y = check_X_y(X, y, finite=False)
        self._validate_parameters()
        device = resolve_device(self.device)
        X_device = X_on_device(X, device, self.dtype)
        classes, y = np.unique(y, return_inverse=True)
        self._start(X.shape[1], classes, device)
        return self._train(X_device, y, self.max_iter)

    def partial_fit(self, X, y, classes=None) -> MLPClassifier:
        """One epoch on X and y, continuing from the weights and optimiser state so far. The first call
        needs `classes`, every label that will ever come (as sklearn's partial_fit does). On the same X
        and y each time, k calls train exactly as fit with max_iter=k does (the same shuffles and steps)."""
        X, y = check_X_y(X, y, finite=False)
        if not hasattr(self, "_network"):
            if classes is None:
                raise ValueError("classes must be passed on the first call to partial_fit.")
            self._validate_parameters()
            device = resolve_device(self.device)
            X_device = X_on_device(X, device, self.dtype)
            self._start(X.shape[1], np.unique(np.asarray(classes)), device)
        else:
            if classes is not None and not np.array_equal(np.unique(np.asarray(classes)), self.classes_):
                raise ValueError(
                    f"`classes={list(classes)!r}` is not the same as on last call to partial_fit, "
                    f"was: {self.classes_.tolist()!r}"
                )
            X_device = X_on_device(self._check_features(X), self._network.device, self.dtype)
        unknown = ~np.isin(y, self.classes_)
        if unknown.any():
            raise ValueError(
                f"y holds label {y[unknown][0].item()!r}, which is not among the classes {self.classes_.tolist()!r}"
            )
        return self._train(X_device, np.searchsorted(self.classes_, y), None)

    def _start(self, n_features: int, classes: np.ndarray, device) -> None:
        """A new network on `device` for n_features inputs and len(classes) classes, drawn from random_state."""
        for name in list(self.__dict__):
            if name.endswith("_") and not name.startswith("__"):
                delattr(self, name)
        self.classes_, self.n_features_in_ = classes, n_features
        self._seed = seed_of(self.random_state)
        hidden = tuple(int(h) for h in np.atleast_1d(self.hidden_layer_sizes))
        arch = Architecture(hidden, self.dtype, n_features, len(classes))
        params = init_parameters(arch, "he", np.random.default_rng(self._seed))
        self._network = Network(arch, device, params)
        self._optimizer = None
        self.loss_curve_, self.n_iter_, self.t_, self.best_loss_ = [], 0, 0, np.inf
        self._no_improvement = self._steps = 0
        if self.early_stopping:
            self.validation_scores_, self.best_validation_score_ = [], -np.inf

    def _train(self, X, y, epochs: int | None) -> MLPClassifier:
        """Train on X (d x n on the network's device, the transpose of the rows) and y (class indices, on
        the host): fit's `epochs` (checked against the stopping rule each epoch, from the loss the steps
        summed on the device), or None for partial_fit's one epoch, which goes on from the steps so far:
        epoch k of a run draws its shuffle from (seed, k) wherever it starts (nn_gpu.step.epoch_order).
        The whole training set is never evaluated (sklearn's loss_curve_ is the steps' own loss)."""
        network, device = self._network, self._network.device
        stopping = epochs is not None
        if self._optimizer is None:  # weight_decay is set below, as alpha / batch
            self._optimizer = self._new_optimizer()
        X_dev = y_dev = None
        if self.early_stopping and stopping:
            rows = np.random.default_rng([self._seed, 1]).permutation(len(y))
            n_dev = max(1, int(round(self.validation_fraction * len(y))))
            if n_dev >= len(y):
                raise ValueError(f"validation_fraction {self.validation_fraction} leaves no samples to train on")
            on, samples = device.to_device(rows), X.T  # split on the device, by rows of the samples: X stays there
            X_dev, y_dev, X, y = samples[on[:n_dev]].T, y[rows[:n_dev]], samples[on[n_dev:]].T, y[rows[n_dev:]]
        batch = min(200, len(y)) if self.batch_size == "auto" else max(1, min(int(self.batch_size), len(y)))
        self._optimizer.weight_decay = self.alpha / batch  # sklearn: the gradient of alpha/2 |W|^2 over a batch
        y_device = device.to_device(y.astype(np.int32))
        dev = None if X_dev is None else (X_dev, device.to_device(y_dev.astype(np.int32)))
        if stopping:
            plan = training.TrainingPlan(learning_rate=self.learning_rate_init, epochs=epochs, batch_size=batch)
            progress = None
        else:  # one epoch more, logged once, at its end
            steps = self._steps + math.ceil(len(y) / batch)
            plan = training.TrainingPlan(
                learning_rate=self.learning_rate_init, iterations=steps, batch_size=batch, log_interval=0
            )
            progress = training.Progress(iteration=self._steps)
        epoch_start = (0, 0) if stopping else (self._steps, self.n_iter_)  # one pass over this X, from here
        try:
            with np.errstate(over="ignore", invalid="ignore"):  # a diverging run is one ValueError, not warnings
                progress = training.train(
                    network,
                    self._optimizer,
                    X,
                    y_device,
                    dev,
                    plan,
                    seed=self._seed,
                    progress=progress,
                    hooks=training.Hooks(on_log=lambda entry: self._after_epoch(entry, len(y)) and stopping),
                    exploding_loss=np.inf,  # any finite loss: unscaled features start high, and are the user's to scale
                    evaluate_at_end=False,
                    epoch_start=epoch_start,
                )
        except training.Diverged:
            raise ValueError(
                f"training diverged in epoch {self.n_iter_ + 1}: the loss or the weights became non-finite; "
                "lower learning_rate_init, or scale X (e.g. with sklearn's StandardScaler)"
            ) from None
        self._steps = progress.iteration
        if dev is not None and progress.best_params is not None:
            network.state[...] = progress.best_params
        return self

    def _new_optimizer(self, moments=None):
        """The solver's optimiser for the network, from zero moments or the host arrays `moments`."""
        if self.solver == "sgd":
            velocity = None if moments is None else moments[0]
            return SGD(self._network, self.momentum, velocity=velocity, steps=self._steps)
        betas = (self.beta_1, self.beta_2)
        adamw = self.solver == "adamw"
        return Adam(self._network, decoupled=adamw, betas=betas, eps=self.epsilon, state=moments, steps=self._steps)

    def _after_epoch(self, entry: dict, m: int) -> bool:
        """Record an epoch (its mean training loss, before each step's update, as sklearn's loss_curve_)
        and apply sklearn's stopping rule; True to stop."""
        self.n_iter_ += 1
        self.t_ += m
        loss = entry["train_loss"]
        self.loss_curve_.append(loss)
        if (
            entry["dev_accuracy"] is not None
        ):  # early_stopping in fit (partial_fit has no validation rows, as sklearn's)
            score = entry["dev_accuracy"]
            self.validation_scores_.append(score)
            worse = score < self.best_validation_score_ + self.tol
            self.best_validation_score_ = max(self.best_validation_score_, score)
        else:
            worse = loss > self.best_loss_ - self.tol
        self.best_loss_ = min(self.best_loss_, loss)
        self._no_improvement = self._no_improvement + 1 if worse else 0
        if self.verbose:
            print(f"Iteration {self.n_iter_}, loss = {loss:.8f}")
        return self._no_improvement > self.n_iter_no_change

    def _validate_parameters(self) -> None:
        """ValueError naming the first parameter outside what scikit-learn's MLPClassifier accepts (its
        _parameter_constraints), before any training."""
        hidden = np.atleast_1d(self.hidden_layer_sizes)
        if hidden.ndim != 1 or hidden.size == 0 or hidden.dtype.kind not in "iu" or (hidden < 1).any():
            raise ValueError(f"hidden_layer_sizes must be positive whole numbers, got {self.hidden_layer_sizes!r}")
        if self.solver not in SOLVERS:
            raise ValueError(f"solver must be one of {', '.join(SOLVERS)}, got {self.solver!r}")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}")
        if not (self.batch_size == "auto" or WHOLE.holds(self.batch_size)):
            raise ValueError(f"batch_size must be 'auto' or a whole number of at least 1, got {self.batch_size!r}")
        for name in ("max_iter", "n_iter_no_change"):
            if not WHOLE.holds(getattr(self, name)):
                raise ValueError(f"{name} must be {WHOLE.notation()}, got {getattr(self, name)!r}")
        for name, interval in INTERVALS.items():
            value = getattr(self, name)
            if not interval.holds(value):
                raise ValueError(f"{name} must be {interval.notation()}, got {value!r}")

    # predicting

    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities, n x C (columns in the order of classes_)."""
        network = self._check_fitted()
        X = self._check_features(check_X(X, finite=False))
        return network.predict_proba(X_on_device(X, network.device, network.arch.dtype)).T

    def predict(self, X) -> np.ndarray:
        """The most probable class of each row of X, as a label of classes_."""
        probabilities = self.predict_proba(X)  # first: it says when the estimator is not fitted
        return self.classes_[probabilities.argmax(axis=1)]

    def score(self, X, y, sample_weight=None) -> float:
        """The mean accuracy of predict(X) against y (weighted by sample_weight when given)."""
        y, predicted = np.asarray(y).ravel(), self.predict(X)
        lengths = [len(y), len(predicted)] + ([] if sample_weight is None else [len(np.ravel(sample_weight))])
        if len(set(lengths)) > 1:  # sklearn's accuracy_score checks the same, with the same words
            raise ValueError(f"Found input variables with inconsistent numbers of samples: {lengths}")
        return float(np.average(predicted == y, weights=sample_weight))

    def _check_fitted(self) -> Network:
        """The fitted network, or NotFittedError: a ValueError for predict, and an AttributeError, so that
        hasattr(clf, "coefs_") is False before fit."""
        if not hasattr(self, "_network"):
            raise sklearns("NotFittedError", NotFittedError)(
                f"This {type(self).__name__} instance is not fitted yet. Call 'fit' with appropriate arguments first."
            )
        return self._network

    def _check_features(self, X: np.ndarray) -> np.ndarray:
        if X.shape[1] != self.n_features_in_:
            raise ValueError(
                f"X has {X.shape[1]} features, but {type(self).__name__} is expecting {self.n_features_in_} "
                "features as input."
            )
        return X

    # sklearn's fitted attributes, read from the network

    @property
    def coefs_(self) -> list[np.ndarray]:
        """W_l^T for each layer: n_{l-1} x n_l host arrays, as sklearn's coefs_."""
        network = self._check_fitted()
        return [network.device.to_host(W).T.copy() for W in network.W]

    @property
    def intercepts_(self) -> list[np.ndarray]:
        """b_l for each layer: n_l host arrays, as sklearn's intercepts_."""
        network = self._check_fitted()
        return [network.device.to_host(b).ravel().copy() for b in network.b]

    @property
    def n_layers_(self) -> int:
        return self._check_fitted().n_layers + 1

    @property
    def n_outputs_(self) -> int:
        return self._check_fitted().arch.n_classes

    @property
    def out_activation_(self) -> str:
        self._check_fitted()
        return "softmax"


def _same(a, b) -> bool:
    try:
        return bool(a == b) if not isinstance(a, np.ndarray) else False
    except ValueError:
        return False
