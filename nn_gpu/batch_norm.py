"""Batch normalisation (Ioffe and Szegedy 2015) of a hidden layer, forward and backward, written against `xp`.

With --batch-norm, hidden layer l normalises W_l A_{l-1} over the batch before its scale and shift:

    forward (a training step, m samples)          backward (dZ_l: d loss / d Z_l, n_l x m)
    Y_l = W_l A_{l-1}                (n_l x m)
    mu_l = mean over samples of Y_l  (n_l x 1)
    var_l = mean of (Y_l - mu_l)^2   (n_l x 1)
    s_l = 1 / sqrt(var_l + eps)      (n_l x 1)
    Yhat_l = (Y_l - mu_l) s_l        (n_l x m)     dg_l = sum over samples of dZ_l * Yhat_l   (n_l x 1)
    Z_l = g_l Yhat_l + b_l           (n_l x m)     db_l = sum over samples of dZ_l            (n_l x 1)
    A_l = ReLU(Z_l)                                dYhat = g_l dZ_l
                                                   dY_l = s_l (dYhat - mean(dYhat) - Yhat_l mean(dYhat * Yhat_l))

and then dW_l = dY_l A_{l-1}^T and dZ_{l-1} = W_l^T dY_l * ReLU'(Z_{l-1}) as in every layer. b_l is the
shift (Ioffe and Szegedy's beta): a bias before the normalisation would be subtracted again with the
mean. The means in dY_l are over the batch's samples; docs/math.md derives the line. The sums of a
step are over its samples, and the gradients divided by m with the rest (Network.sum_gradients).

A training step also moves the running statistics towards the batch's, as PyTorch's BatchNorm1d does
(momentum 0.1, the variance unbiased: var_l m / (m - 1)); evaluation, prediction, the page and
predict normalise with those instead of a batch's, so a prediction never depends on its batch:

    running_mean := (1 - momentum) running_mean + momentum mu_l
    running_var := (1 - momentum) running_var + momentum var_l m / (m - 1)
"""

from __future__ import annotations

from nn_gpu.ops import array_module

EPS = 1e-5
MOMENTUM = 0.1


def normalise(Y, running_mean, running_var, training: bool):
    """(Yhat, s): Y (n x m) normalised per unit, and s = 1 / sqrt(var + EPS) (n x 1). training: with the
    batch's mean and variance, and the running statistics (n x 1 each) moved towards them in place;
    otherwise with the running statistics."""
    xp = array_module(Y)
    if training:
        m = Y.shape[1]
        mu = Y.mean(axis=1, keepdims=True)
        centred = Y - mu
        var = (centred * centred).mean(axis=1, keepdims=True)
        running_mean *= 1 - MOMENTUM
        running_mean += MOMENTUM * mu
        running_var *= 1 - MOMENTUM
        running_var += (MOMENTUM * m / max(m - 1, 1)) * var
    else:
        centred, var = Y - running_mean, running_var
    s = 1 / xp.sqrt(var + EPS)
    return centred * s, s


def normalise_backward(dZ, g, Yhat, s, dg):
    """dY (n x m), from dZ (n x m, the gradient at Z = g Yhat + b), the scale g (n x 1), forward's Yhat
    (n x m) and s (n x 1); dg (n x 1) := sum over samples of dZ * Yhat, in place."""
    dg[...] = (dZ * Yhat).sum(axis=1, keepdims=True)
    dYhat = dZ * g
    return s * (dYhat - dYhat.mean(axis=1, keepdims=True) - Yhat * (dYhat * Yhat).mean(axis=1, keepdims=True))
