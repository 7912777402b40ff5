"""Fréchet distance between two sets of embeddings, each summarised as a Gaussian.

    FD = |mu_x - mu_y|^2 + Tr(S_x) + Tr(S_y) - 2 Tr((S_x S_y)^(1/2))

the FID/FAD formula, used over CLaMP embeddings as the Fréchet Music Distance. Two routes:

* :func:`frechet_distance_from_stats` — the textbook computation from means and covariances
  with ``scipy.linalg.sqrtm`` and the usual safeguards (eps on the diagonal when the product is
  singular, tiny imaginary parts discarded). Use it when only statistics are available.
* :func:`frechet_distance` — from the samples, exactly and without a matrix square root:
  the non-zero eigenvalues of S_x S_y are the squared singular values of
  Xc Yc^T / sqrt((n_x - 1)(n_y - 1)) (Xc, Yc centred samples), so the trace term is that
  matrix's nuclear norm. It is stable when N < D (singular covariances need no eps) and about
  ten times faster at D = 768, which is what makes bootstrap intervals affordable.

The two agree to ~1e-8 relative on well-conditioned data (tested).
"""

from __future__ import annotations

import warnings

import numpy as np


def _as_samples(x: np.ndarray, name: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or len(x) < 2:
        raise ValueError(f"{name}: need at least two embeddings of shape (N, D), got {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError(f"{name}: embeddings contain NaN or infinity")
    return x


def gaussian_stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean (D,) and unbiased covariance (D, D), float64, of embeddings (N >= 2, D)."""
    x = _as_samples(x, "embeddings")
    return x.mean(axis=0), np.cov(x, rowvar=False)


def frechet_distance_from_stats(
    mu_x: np.ndarray, cov_x: np.ndarray, mu_y: np.ndarray, cov_y: np.ndarray, eps: float = 1e-6
) -> float:
    """FD from Gaussian statistics, with ``scipy.linalg.sqrtm``.

    When sqrtm reports a singular product or returns non-finite values, ``eps`` is added to
    both diagonals and the root is taken again. Imaginary parts (numerical noise of sqrtm on a
    nearly singular product) are dropped when their largest diagonal magnitude is below 1e-3;
    larger ones raise ``ValueError``. The result is clipped at 0.
    """
    from scipy.linalg import LinAlgWarning, sqrtm

    mu_x, mu_y = np.asarray(mu_x, np.float64), np.asarray(mu_y, np.float64)
    cov_x, cov_y = np.atleast_2d(cov_x).astype(np.float64), np.atleast_2d(cov_y).astype(np.float64)
    if mu_x.shape != mu_y.shape or cov_x.shape != cov_y.shape or cov_x.shape != (len(mu_x), len(mu_x)):
        raise ValueError(f"mismatched statistics: {mu_x.shape}, {cov_x.shape}, {mu_y.shape}, {cov_y.shape}")

    def root(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, bool]:
        with warnings.catch_warnings():
            warnings.simplefilter("error", LinAlgWarning)
            try:
                result = sqrtm(a @ b)
            except LinAlgWarning:
                return np.full(a.shape, np.nan), False
        return result, bool(np.isfinite(result).all())

    covmean, ok = root(cov_x, cov_y)
    if not ok:
        offset = np.eye(len(mu_x)) * eps
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # still singular after the offset: use what sqrtm gives
            covmean = sqrtm((cov_x + offset) @ (cov_y + offset))
    if np.iscomplexobj(covmean):
        imaginary = np.max(np.abs(np.diagonal(covmean).imag))
        if imaginary > 1e-3:
            raise ValueError(f"sqrtm of the covariance product has imaginary part {imaginary:.3g}")
        covmean = covmean.real
    diff = mu_x - mu_y
    fd = diff @ diff + np.trace(cov_x) + np.trace(cov_y) - 2.0 * np.trace(covmean)
    return float(max(fd, 0.0))


def _factor(centred: np.ndarray) -> np.ndarray:
    """A matrix R with R^T R = Xc^T Xc and min(N, D) rows (Xc itself when N <= D).

    For N > D the Cholesky factor of the D x D Gram matrix is used (a matrix product and a
    Cholesky run ~10x faster than a QR of Xc at N = 2000, D = 768); a rank-deficient Gram
    matrix (e.g. a bootstrap resample with many repeats) falls back to QR.
    """
    if len(centred) <= centred.shape[1]:
        return centred
    try:
        return np.linalg.cholesky(centred.T @ centred).T
    except np.linalg.LinAlgError:
        return np.linalg.qr(centred, mode="r")


def frechet_distance(x: np.ndarray, y: np.ndarray, warn_small: bool = True) -> float:
    """FD between embedding sets ``x`` (N_x, D) and ``y`` (N_y, D), exact (see module docstring).

    Embeddings are used as given (normalise them first if the comparison should ignore norms).
    Warns when a set has fewer items than dimensions: its covariance is then rank-deficient and
    the distance is dominated by sample-size bias, so only compare sets of equal sizes.
    """
    x, y = _as_samples(x, "generated"), _as_samples(y, "reference")
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"dimension mismatch: {x.shape[1]} vs {y.shape[1]}")
    if warn_small and min(len(x), len(y)) < x.shape[1]:
        warnings.warn(
            f"Fréchet distance from {len(x)} and {len(y)} items in {x.shape[1]} dimensions: N < D, the "
            "covariances are rank-deficient and the distance is strongly biased by set size",
            UserWarning,
            stacklevel=2,
        )
    mu_x, mu_y = x.mean(axis=0), y.mean(axis=0)
    xc, yc = x - mu_x, y - mu_y
    scale = np.sqrt((len(x) - 1) * (len(y) - 1))
    trace_sqrt = np.linalg.svd(_factor(xc) @ _factor(yc).T, compute_uv=False).sum() / scale
    diff = mu_x - mu_y
    trace_x = np.sum(xc * xc) / (len(x) - 1)
    trace_y = np.sum(yc * yc) / (len(y) - 1)
    return float(max(diff @ diff + trace_x + trace_y - 2.0 * trace_sqrt, 0.0))


def frechet_bootstrap(
    x: np.ndarray,
    y: np.ndarray,
    n_resamples: int = 100,
    level: float = 0.95,
    seed: int = 0,
    show_progress: bool = False,
) -> dict:
    """FD with a bootstrap confidence interval (both sets resampled with replacement).

    Resampling with replacement repeats items, which shrinks the covariance rank and inflates
    FD, so the raw percentile interval would sit above the point estimate. The interval
    reported is the percentile interval shifted by the bootstrap bias estimate
    (mean of the resampled distances minus the point estimate), clipped at 0; the bias is
    reported too. Returns ``{"distance", "ci95": [lo, hi], "bootstrap_bias", "n_resamples",
    "n_generated", "n_reference", "dim"}`` (the ``ci`` key is named after ``level``).
    """
    from tqdm.auto import tqdm

    x, y = _as_samples(x, "generated"), _as_samples(y, "reference")
    point = frechet_distance(x, y)
    out = {"distance": point, "n_generated": len(x), "n_reference": len(y), "dim": int(x.shape[1])}
    key = f"ci{round(level * 100)}"
    if n_resamples < 2:
        return {**out, key: None, "bootstrap_bias": None, "n_resamples": 0}
    rng = np.random.default_rng(seed)
    values = np.empty(n_resamples)
    for b in tqdm(range(n_resamples), desc="Fréchet bootstrap", unit="resample", disable=not show_progress):
        values[b] = frechet_distance(
            x[rng.integers(0, len(x), len(x))], y[rng.integers(0, len(y), len(y))], warn_small=False
        )
    bias = float(values.mean() - point)
    alpha = (1.0 - level) / 2.0
    lo, hi = np.quantile(values, [alpha, 1.0 - alpha]) - bias
    return {
        **out,
        key: [float(max(lo, 0.0)), float(max(hi, 0.0))],
        "bootstrap_bias": bias,
        "n_resamples": n_resamples,
    }
