"""F-labels of one task reduced to what every model's score needs (docs/design.md §2).

The standardized label embeddings ``Z_k [N, L]`` are written as ``Z_k = U R_k``: either the N x C
one-hot class matrix times a standardized class-embedding table (vocabulary labels: classes, VQA answers,
any label drawn from a finite set), or the dense standardized labels themselves (free text, one embedding
per sample). Everything per task — the K x K Gram ``A`` and the products ``R_k R_l'`` — is computed here
once and shared by every model of the zoo.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import torch

from ..common.validate import as_float_tensor, check_finite, describe

EPS_STD = 1e-8  # the released code's z-score: (z - mean) / (population std + 1e-8)
_PAIR_LIMIT = 1 << 24  # store R_k R_l' [K, K, C, C] when it has at most this many entries


@dataclass
class ClassLabels:
    """Vocabulary labels given directly: ``table [C, L, K]`` (or a list of K tables ``[C, L_k]``) of class
    embeddings and ``indices [N]`` (int) naming each sample's class. Rows of classes that no sample uses
    are ignored."""

    table: object
    indices: object


@dataclass
class FreeTextLabels:
    """Several texts per sample. ``labels``: K blocks ``[M, L_k]``, one row per text (M >= N) or per sample
    (averaged, M = N); ``sample_index [M]`` (int64): the sample each row belongs to.

    ``emms_score(X, labels)`` / ``emms_scores`` / ``rank`` take it as it is, with features ``X [N, D]``: with
    several rows per sample the score is EMMS on the features repeated once per row (docs/design.md §2), as
    ``emms_score(labels.features(X), labels.labels)`` computes explicitly."""

    labels: list
    sample_index: torch.Tensor
    n_samples: int

    def features(self, X):
        """Rows of ``X [N, D]`` (tensor or array) repeated to ``[M, D]``, one per label row."""
        if len(X) != self.n_samples:
            raise ValueError(f"X must be [N, D] with N == {self.n_samples} samples (got {len(X)} rows)")
        idx = self.sample_index
        return X[idx] if torch.is_tensor(X) else np.asarray(X)[idx.numpy()]


@dataclass
class LabelBasis:
    """Per-task label statistics. ``N`` samples, ``K`` embedders, ``L`` embedding width (after padding)."""

    N: int
    K: int
    L: int
    A: torch.Tensor  # [K, K] float64, A_kl = <Z_k, Z_l>
    classes: torch.Tensor | None = None  # [N] int64 in [0, C): vocabulary labels
    counts: torch.Tensor | None = None  # [C] float64 samples per class
    table: torch.Tensor | None = None  # [C, K, L] float64 standardized class embeddings (R)
    pair: torch.Tensor | None = None  # [K, K, C, C] float64, R_k R_l', when small enough
    dense: torch.Tensor | None = None  # [N, K*L] float64 standardized labels, column (k, l) = Z_k[:, l]
    # Several label rows per sample (FreeTextLabels): [S] int64 rows of each of the S samples, the rows
    # sorted by sample. The features [S, D] are repeated to the N label rows; None: one row per sample.
    rows_per_sample: torch.Tensor | None = None
    # Copies on other devices made by to(), kept so that a zoo uploads its labels once, not once per batch.
    _moved: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    @property
    def n_samples(self) -> int:
        """Rows the features must have: S with several label rows per sample, else N."""
        return self.N if self.rows_per_sample is None else int(self.rows_per_sample.shape[0])

    def repeat_rows(self, x: torch.Tensor, first: int = 0) -> torch.Tensor:
        """Feature rows ``x [n, D]`` (samples ``first .. first + n - 1``) repeated to their label rows."""
        if self.rows_per_sample is None:
            return x
        counts = self.rows_per_sample[first : first + x.shape[0]].to(x.device)
        return x.repeat_interleave(counts, dim=0)

    @property
    def r(self) -> int:
        """Width of the label basis U: classes C, or K*L for dense labels."""
        return self.table.shape[0] if self.table is not None else self.K * self.L

    @property
    def is_vocabulary(self) -> bool:
        """True for vocabulary labels (a class table ``R [C, K, L]``), False for dense free-text labels."""
        return self.table is not None

    def to(self, device) -> LabelBasis:
        """The same basis with its tensors on `device` (A stays where the K x K solve runs: same device)."""
        device = torch.device(device)
        if self.A.device == device:
            return self
        if device not in self._moved:
            fields = ("A", "classes", "counts", "table", "pair", "dense", "rows_per_sample")
            move = {f: getattr(self, f) for f in fields}
            self._moved[device] = replace(self, **{f: None if v is None else v.to(device) for f, v in move.items()})
        return self._moved[device]

    def B_from_half(self, W: torch.Tensor) -> torch.Tensor:
        """B [M, K, K] from W [M, D', r] with F' G^+ F = W'W per model: B_kl = tr(R_k' W'W R_l)."""
        return self.B_from_pair(W, W)

    def B_from_pair(self, Y: torch.Tensor, W: torch.Tensor) -> torch.Tensor:
        """B [M, K, K] from Y, W [M, D', r] with F' P F = Y'W (P symmetric, e.g. ``Y = F``, ``W = P F``):
        B_kl = tr(R_k' Y'W R_l), symmetrized (Y'W is symmetric but for rounding)."""
        if self.is_vocabulary:
            return self.B_from_class_gram(Y.transpose(-1, -2) @ W)
        Yb = Y.reshape(Y.shape[0], Y.shape[1], self.K, self.L)
        Wb = W.reshape(W.shape[0], W.shape[1], self.K, self.L)
        B = torch.einsum("mdkl,mdjl->mkj", Yb, Wb)
        return (B + B.transpose(-1, -2)) / 2

    def B_from_class_gram(self, Q: torch.Tensor) -> torch.Tensor:
        """[M, K, K] with entries tr(R_k' Q R_l) from class-space Grams Q [M, C, C] (vocabulary labels)."""
        if self.pair is not None:
            B = torch.einsum("mij,klij->mkl", Q, self.pair)
        else:
            M, C = Q.shape[0], Q.shape[1]
            QR = (Q @ self.table.reshape(C, -1)).reshape(M, *self.table.shape)
            B = torch.einsum("ckl,mcjl->mkj", self.table, QR)
        return (B + B.transpose(-1, -2)) / 2

    def B_per_row(self, Y: torch.Tensor) -> torch.Tensor:
        """[M, D, K, K]: the contribution of each row of Y [M, D, r] to B_from_half(Y) (which is their sum)."""
        M, D = Y.shape[0], Y.shape[1]
        P = (Y @ self.table.reshape(self.r, -1)) if self.is_vocabulary else Y
        P = P.reshape(M, D, self.K, self.L)
        return torch.einsum("mdkl,mdjl->mdkj", P, P)

    def mix(self, F: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """F R t per model: F [M, D', r], label mixtures t [M, K] -> [M, D', L] (right-hand sides of the W fit)."""
        if self.is_vocabulary:
            return F @ torch.einsum("ckl,mk->mcl", self.table, t)
        return torch.einsum("mdkl,mk->mdl", F.reshape(*F.shape[:2], self.K, self.L), t)


def _standardize_columns(z: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """z-score every column of z [R, L] in float64; rows weighted by `weights` [R] (class counts) if given."""
    z = z.to(torch.float64)
    if weights is None:
        mean = z.mean(0)
        std = ((z - mean) ** 2).mean(0).sqrt()
    else:
        w = weights[:, None] / weights.sum()
        mean = (w * z).sum(0)
        std = (w * (z - mean) ** 2).sum(0).sqrt()
    return (z - mean) / (std + EPS_STD)


def _stack_embedders(zs: list[torch.Tensor]) -> torch.Tensor:
    """K standardized [R, L_k] blocks -> [R, K, L], narrower ones zero-padded (zeros add nothing to A or B)."""
    L = max(z.shape[1] for z in zs)
    return torch.stack([torch.nn.functional.pad(z, (0, L - z.shape[1])) for z in zs], dim=1)


def _as_embedder_list(x, name: str, rows: str, finite: bool = True) -> tuple[list[torch.Tensor], torch.Tensor | None]:
    """[R, L, K] tensor/array or list of K [R, L_k] -> (list of K float tensors [R, L_k], the [R, L, K]
    tensor when that was the input, else None), validated (``finite=False``: but for non-finite values,
    which the caller then checks itself, ``_check_finite_embedders``)."""
    stacked = None
    if isinstance(x, (list, tuple)):
        if len(x) == 0:
            raise ValueError(f"{name} must hold K >= 1 embedders (got an empty list)")
        zs = [as_float_tensor(z, f"{name}[{k}]", f"[{rows}, L_k]") for k, z in enumerate(x)]
        for k, z in enumerate(zs):
            if z.dim() != 2 or z.shape[1] == 0:
                raise ValueError(f"{name}[{k}] must be [{rows}, L_k] with L_k >= 1 (got {describe(z)})")
            if z.shape[0] != zs[0].shape[0]:
                raise ValueError(f"{name}[{k}] must have {zs[0].shape[0]} rows like {name}[0] (got {describe(z)})")
    else:
        z = as_float_tensor(x, name, f"[{rows}, L, K]")
        if z.dim() != 3 or z.shape[1] == 0 or z.shape[2] == 0:
            raise ValueError(
                f"{name} must be [{rows}, L, K] with L >= 1 and K >= 1 embedders, or a list of K arrays "
                f"[{rows}, L_k] (got {describe(z)})"
            )
        zs, stacked = [z[:, :, k] for k in range(z.shape[2])], z
    # One contiguous sum for a stacked input (its K column views are strided: K slow reductions).
    if finite and (stacked is None or not bool(torch.isfinite(stacked.sum()))):
        _check_finite_embedders(zs, name)
    return zs, stacked


def _check_finite_embedders(zs: list[torch.Tensor], name: str) -> None:
    """The per-embedder finite check, with its message (a ValueError naming the embedder and the values)."""
    for k, z in enumerate(zs):
        if not bool(torch.isfinite(z.sum())):
            check_finite(z, f"{name}" if len(zs) == 1 else f"{name} (embedder {k})")


def _vocabulary_basis(classes: torch.Tensor, zs_raw: list[torch.Tensor], pairs: bool = True) -> LabelBasis:
    """Basis from a class table given as K raw blocks [C, L_k] and class indices [N]."""
    counts = torch.bincount(classes, minlength=zs_raw[0].shape[0]).to(torch.float64)
    used = counts > 0
    if not bool(used.all()):  # classes no sample uses carry no information: drop them, renumber the rest
        remap = torch.cumsum(used.to(torch.int64), 0) - 1
        classes = remap[classes]
        zs_raw = [z[used] for z in zs_raw]
        counts = counts[used]
    table = _stack_embedders([_standardize_columns(z, counts) for z in zs_raw])  # [C, K, L]
    C, K, L = table.shape
    A = torch.einsum("c,ckl,cjl->kj", counts, table, table)
    pair = None
    if pairs and K * K * C * C <= _PAIR_LIMIT:
        pair = torch.einsum("ikl,jml->kmij", table, table)  # [K, K, C, C]: (R_k R_m')_ij
    _check_labels_vary(A)
    return LabelBasis(
        N=int(classes.shape[0]), K=K, L=L, A=(A + A.T) / 2, classes=classes, counts=counts, table=table, pair=pair
    )


def _row_hash(flat: torch.Tensor) -> torch.Tensor:
    """[N] a fixed random projection of the rows of flat [N, P]: equal rows hash alike (up to BLAS blocking),
    and a row holding a NaN or an infinity hashes to a non-finite value."""
    g = torch.Generator().manual_seed(0x454D4D53)
    return flat @ torch.randn(flat.shape[1], generator=g, dtype=torch.float64).to(flat.dtype)


def _detect_vocabulary(flat: torch.Tensor, h: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor] | None:
    """If the rows of flat [N, P] take few distinct values, return (first row index per value [C], inverse [N]).

    A random projection (``h``, ``_row_hash``) groups equal rows in O(N P); the grouping is then verified
    exactly, so a hash collision can only cost the shortcut, never correctness.
    """
    N = flat.shape[0]
    # Equal rows may hash apart through BLAS blocking; that only splits a class in two (still exact).
    h = _row_hash(flat) if h is None else h
    uniq, inverse = torch.unique(h, return_inverse=True)
    C = uniq.shape[0]
    if C > N // 2:
        return None
    first = torch.full((C,), N, dtype=torch.int64).scatter_reduce(0, inverse, torch.arange(N), "amin")
    # Each row against its class's first row, a MB at a time: a gathered copy of all of flat (labels can be as
    # large as the features) would cost more in fresh memory than the comparison itself. index_select copies
    # whole rows: 0.8x the time of advanced indexing (N = 5000, 3072 float32 values per row).
    rep = first[inverse]
    step = max(1, (1 << 20) // max(flat.shape[1] * flat.element_size(), 1))
    for s in range(0, N, step):
        if not torch.equal(flat[s : s + step], flat.index_select(0, rep[s : s + step])):
            return None
    return first, inverse


def prepare_labels(label_embeddings, vocabulary: bool | None = None, *, pairs: bool = True) -> LabelBasis:
    """Validate and reduce F-labels once per task.

    Args:
        label_embeddings: ``[N, L, K]`` tensor/array; a list of K arrays ``[N, L_k]`` (each standardized,
            then zero-padded to the widest, so L = max L_k in the score's 1/(N L)); or ``ClassLabels`` /
            a ``(table, indices)`` pair for vocabulary labels; or ``FreeTextLabels`` (several rows per sample:
            the basis has one row per label row, and ``rows_per_sample`` says how to repeat the features).
        vocabulary: force (True) or forbid (False) the class-basis shortcut for dense input; by default it
            is used when the N rows take at most N/2 distinct values.
        pairs: precompute the class-pair products ``R_k R_l'`` (they pay off over a zoo's many models).
    """
    if isinstance(label_embeddings, FreeTextLabels):
        return _free_text_basis(label_embeddings, vocabulary)
    if isinstance(label_embeddings, tuple) and len(label_embeddings) == 2 and _is_index_vector(label_embeddings[1]):
        label_embeddings = ClassLabels(*label_embeddings)
    if isinstance(label_embeddings, ClassLabels):
        zs, _ = _as_embedder_list(label_embeddings.table, "label_embeddings.table", "C")
        idx = torch.as_tensor(label_embeddings.indices)
        C = zs[0].shape[0]
        if idx.dim() != 1 or idx.dtype.is_floating_point or idx.dtype == torch.bool:
            raise ValueError(f"label_embeddings.indices must be an integer vector [N] (got {describe(idx)})")
        if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= C):
            raise ValueError(
                f"label_embeddings.indices must lie in [0, C={C}) (got values in [{int(idx.min())}, {int(idx.max())}])"
            )
        _check_n(idx.shape[0], "label_embeddings.indices")
        return _vocabulary_basis(idx.to(torch.int64), zs, pairs)

    zs, stacked = _as_embedder_list(label_embeddings, "label_embeddings", "N", finite=vocabulary is False)
    _check_n(zs[0].shape[0], "label_embeddings")
    if vocabulary is not False:
        if stacked is not None:
            flat = stacked.reshape(stacked.shape[0], -1)  # a view of the [N, L, K] input when contiguous
        else:
            flat = torch.cat(zs, dim=1)
        # The hash is the finite check too: no separate pass over labels that can be as large as the features.
        h = _row_hash(flat)
        if not bool(torch.isfinite(h).all()):
            _check_finite_embedders(zs, "label_embeddings")
            h = _row_hash(flat.double())  # finite values near float32's largest: their projections overflowed
        found = _detect_vocabulary(flat, h)
        if found is None and vocabulary:
            raise ValueError(
                "vocabulary=True but the label rows are not drawn from a set of at most N/2 distinct embeddings"
            )
        if found is not None:
            first, inverse = found
            return _vocabulary_basis(inverse, [z[first] for z in zs], pairs)
    Z = _stack_embedders([_standardize_columns(z) for z in zs])  # [N, K, L]
    N, K, L = Z.shape
    A = torch.einsum("nkl,njl->kj", Z, Z)
    _check_labels_vary(A)
    return LabelBasis(N=N, K=K, L=L, A=(A + A.T) / 2, dense=Z.reshape(N, K * L))


def _free_text_basis(fl: FreeTextLabels, vocabulary: bool | None) -> LabelBasis:
    """The basis of the label rows sorted by sample (a permutation of rows applied to both sides changes no
    score), with ``rows_per_sample`` when a sample has other than one row."""
    S = int(fl.n_samples)
    idx = torch.as_tensor(fl.sample_index)
    if idx.dim() != 1 or idx.dtype.is_floating_point or idx.dtype == torch.bool:
        raise ValueError(f"label_embeddings.sample_index must be an integer vector [M] (got {describe(idx)})")
    idx = idx.to(torch.int64).cpu()
    if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= S):
        raise ValueError(
            f"label_embeddings.sample_index must lie in [0, n_samples={S}) "
            f"(got values in [{int(idx.min())}, {int(idx.max())}])"
        )
    counts = torch.bincount(idx, minlength=S)
    if bool((counts == 0).any()):
        raise ValueError(
            f"every sample needs at least one label row: label_embeddings.sample_index names no row for "
            f"{int((counts == 0).sum())} of the {S} samples (e.g. sample {int((counts == 0).nonzero()[0, 0])})"
        )
    order = torch.argsort(idx, stable=True)
    zs, _ = _as_embedder_list(fl.labels, "label_embeddings.labels", "M")
    if any(z.shape[0] != idx.shape[0] for z in zs):
        raise ValueError(
            f"label_embeddings.labels must be K blocks [M, L_k] with M = {idx.shape[0]} rows, one per entry of "
            f"sample_index (got {[list(z.shape) for z in zs]})"
        )
    _check_n(S, "label_embeddings.n_samples")
    basis = prepare_labels([z[order] for z in zs], vocabulary)
    if bool((counts == 1).all()):
        return basis
    return replace(basis, rows_per_sample=counts)


def _check_labels_vary(A: torch.Tensor) -> None:
    """A target whose label embeddings are the same for every sample (a single class) leaves EMMS nothing
    to fit: every model would score a perfect 0. That is an input error, not a ranking."""
    if not bool((A.diagonal() > 0).any()):
        raise ValueError(
            "label_embeddings must vary across the N samples (got the same embedding for every "
            "sample, e.g. a single class): EMMS has nothing to fit and every model would score 0"
        )


def _is_index_vector(x) -> bool:
    try:
        t = torch.as_tensor(x)
    except Exception:  # whatever torch cannot convert is not an index vector
        return False
    return t.dim() == 1 and not t.dtype.is_floating_point and t.dtype != torch.bool


def _check_n(n: int, name: str) -> None:
    if n < 2:
        raise ValueError(f"{name} must have N >= 2 samples (got N={n})")
