"""Enumerable joint distributions over short token sequences, with exact conditionals.

A distribution over sequences x = (x_1, ..., x_N) with x_i in {0, ..., V-1} is stored as a dense
tensor ``p`` of shape (V,) * N with ``p[x] = pi(x)``. Every conditional is then exact:

    pi(x_B | x_{-B}) = pi(x) / sum_{y_B} pi(y_B, x_{-B})          (B a set of positions)

When the context x_{-B} has probability 0 the conditional is undefined; we use the uniform
distribution over V^|B| there (the maximum-entropy choice; it only matters for targets with zeros,
such as "all tokens equal" or a translation table).

States are numbered in lexicographic order (x_1 most significant): index(x) = sum_i x_i V^(N-1-i),
which is ``p.reshape(-1)``'s order. Ising spins s in {-1, +1} are tokens x = (s + 1) / 2.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Joint:
    """An exact joint distribution pi over V^N sequences (``p``: a tensor of shape (V,)*N)."""

    p: np.ndarray
    name: str = ""

    def __post_init__(self):
        p = np.asarray(self.p, dtype=np.float64)
        if p.ndim == 0 or len(set(p.shape)) != 1:
            raise ValueError(f"p must have shape (V,)*N, got {p.shape}")
        if (p < 0).any() or not np.isclose(p.sum(), 1.0):
            raise ValueError("p must be non-negative and sum to 1")
        object.__setattr__(self, "p", p / p.sum())

    @property
    def n(self) -> int:
        """Sequence length N."""
        return self.p.ndim

    @property
    def v(self) -> int:
        """Vocabulary size V."""
        return self.p.shape[0]

    @property
    def size(self) -> int:
        """Number of states S = V^N."""
        return self.p.size

    def flat(self) -> np.ndarray:
        """pi as a vector of length S (lexicographic state order)."""
        return self.p.reshape(-1)

    def states(self) -> np.ndarray:
        """(S, N) int array: the digits of every state, in index order."""
        return all_sequences(self.n, self.v)

    def conditional(self, block) -> np.ndarray:
        """Tensor c with c[y] = pi(y_B | y_{-B}) for every state y (uniform on zero-mass contexts)."""
        axes = tuple(sorted(set(int(b) for b in block)))
        ctx = self.p.sum(axis=axes, keepdims=True)
        with np.errstate(invalid="ignore", divide="ignore"):
            c = np.where(ctx > 0, self.p / np.where(ctx > 0, ctx, 1.0), 1.0 / self.v ** len(axes))
        return c

    def masked_marginals(self, partial) -> np.ndarray:
        """Exact single-site conditionals pi(x_i | x_U) of the masked positions of a partial sequence.

        ``partial``: length-N sequence, a token in [0, V) where observed (the set U) and -1 where
        masked. Returns an (m, V) array, row j for the j-th masked position (in position order);
        the masked positions other than i are summed out. Uniform when pi(x_U) = 0.
        """
        idx = tuple(int(t) if t >= 0 else slice(None) for t in partial)
        sub = self.p[idx]                                    # tensor over the m masked positions
        m = sub.ndim
        total = sub.sum()
        if total <= 0:
            return np.full((m, self.v), 1.0 / self.v)
        return np.stack([sub.sum(axis=tuple(a for a in range(m) if a != j)) / total for j in range(m)])

    def prob_of(self, predicate) -> float:
        """pi({x : predicate(x)}) for a predicate on the (S, N) state array (vectorised)."""
        return float(self.flat()[np.asarray(predicate(self.states()), dtype=bool)].sum())


def all_sequences(n: int, v: int) -> np.ndarray:
    """(V^N, N) array of all sequences in lexicographic (index) order."""
    return np.array(list(itertools.product(range(v), repeat=n)), dtype=np.int64).reshape(v ** n, n)


def seq_index(seqs, v: int) -> np.ndarray:
    """Index of each sequence (rows of ``seqs``) in the lexicographic order."""
    seqs = np.asarray(seqs, dtype=np.int64)
    n = seqs.shape[-1]
    return seqs @ (v ** np.arange(n - 1, -1, -1, dtype=np.int64))


def from_log_weights(logw: np.ndarray, name: str = "") -> Joint:
    """Joint with pi(x) proportional to exp(logw[x]) (computed stably)."""
    logw = np.asarray(logw, dtype=np.float64)
    w = np.exp(logw - logw.max())
    return Joint(w / w.sum(), name)


# --- Ising models ----------------------------------------------------------------------------
def ising(n: int, edges, J, h=0.0, name: str = "") -> Joint:
    """Ising model pi(s) ~ exp(sum_{(i,j) in edges} J_ij s_i s_j + sum_i h_i s_i), s in {-1,+1}^N.

    ``J``: a scalar (same coupling on every edge) or one value per edge; ``h``: scalar or per site.
    """
    edges = [tuple(e) for e in edges]
    J = np.broadcast_to(np.asarray(J, dtype=np.float64), (len(edges),))
    h = np.broadcast_to(np.asarray(h, dtype=np.float64), (n,))
    s = 2.0 * all_sequences(n, 2) - 1.0                          # (S, N) spins
    logw = s @ h
    for (i, j), Jij in zip(edges, J):
        logw = logw + Jij * s[:, i] * s[:, j]
    return from_log_weights(logw.reshape((2,) * n), name or f"ising(n={n})")


def chain_edges(n: int, periodic: bool = False) -> list[tuple[int, int]]:
    """Edges of a path 0-1-...-(n-1) (a cycle if periodic)."""
    edges = [(i, i + 1) for i in range(n - 1)]
    if periodic and n > 2:
        edges.append((n - 1, 0))
    return edges


def grid_edges(rows: int, cols: int) -> list[tuple[int, int]]:
    """Nearest-neighbour edges of a rows x cols grid (free boundary), sites numbered row-major."""
    edges = []
    for r in range(rows):
        for c in range(cols):
            i = r * cols + c
            if c + 1 < cols:
                edges.append((i, i + 1))
            if r + 1 < rows:
                edges.append((i, i + cols))
    return edges


def ising_chain(n: int, J: float, h: float = 0.0, periodic: bool = False) -> Joint:
    """Ising chain of n spins with coupling J and field h."""
    return ising(n, chain_edges(n, periodic), J, h, f"ising chain n={n} J={J:g} h={h:g}")


def ising_grid(rows: int, cols: int, J: float, h: float = 0.0) -> Joint:
    """Ising model on a rows x cols grid with coupling J and field h."""
    return ising(rows * cols, grid_edges(rows, cols), J, h, f"ising grid {rows}x{cols} J={J:g} h={h:g}")


# --- other targets ---------------------------------------------------------------------------
def all_equal(n: int, v: int = 2) -> Joint:
    """Uniform over the V constant sequences (a, a, ..., a): perfectly correlated tokens."""
    p = np.zeros((v,) * n)
    for a in range(v):
        p[(a,) * n] = 1.0 / v
    return Joint(p, f"all-equal n={n} V={v}")


def random_mrf(n: int, v: int, order: int = 2, scale: float = 1.0, seed: int = 0) -> Joint:
    """A random Markov random field with interactions of order <= ``order``.

    log pi(x) = sum_{C subset of positions, 1 <= |C| <= order} theta_C(x_C) + const, every table
    entry theta_C(.) drawn i.i.d. N(0, scale^2). Strictly positive, so all conditionals are defined.
    """
    rng = np.random.default_rng(seed)
    logw = np.zeros((v,) * n)
    for size in range(1, order + 1):
        for clique in itertools.combinations(range(n), size):
            table = rng.normal(0.0, scale, size=(v,) * size)
            shape = [v if i in clique else 1 for i in range(n)]
            logw = logw + table.reshape(shape)
    return from_log_weights(logw, f"random MRF n={n} V={v} order={order} seed={seed}")


@dataclass(frozen=True)
class TranslationEntry:
    """One source sentence of a toy translation table: its valid targets and their probabilities."""

    source: str
    targets: tuple[tuple[str, ...], ...]
    weights: tuple[float, ...]
    vocab: tuple[str, ...]
    joint: Joint

    def is_valid(self, seqs: np.ndarray) -> np.ndarray:
        """Boolean per row of ``seqs`` (token ids): is it one of the valid targets?"""
        valid = np.array([[self.vocab.index(w) for w in t] for t in self.targets])
        return (np.asarray(seqs)[:, None, :] == valid[None, :, :]).all(-1).any(-1)

    def words(self, seq) -> str:
        return " ".join(self.vocab[int(t)] for t in seq)


def translation_entry(source: str, targets: dict[str, float], eps: float = 0.0) -> TranslationEntry:
    """A source with several valid targets of equal length (the length is assumed known, as after
    a GMLM's length prediction). The vocabulary is the set of target words; pi puts ``weights`` on
    the valid targets, mixed with ``eps`` times the uniform distribution (eps = 0: exact zeros)."""
    tgt = [tuple(t.split()) for t in targets]
    if len({len(t) for t in tgt}) != 1:
        raise ValueError(f"{source!r}: targets must have the same length, got {[len(t) for t in tgt]}")
    vocab = tuple(sorted({w for t in tgt for w in t}))
    n, v = len(tgt[0]), len(vocab)
    w = np.array(list(targets.values()), dtype=np.float64)
    w = w / w.sum()
    p = np.full((v,) * n, eps / v ** n)
    for t, wt in zip(tgt, w):
        p[tuple(vocab.index(x) for x in t)] += (1.0 - eps) * wt
    return TranslationEntry(source, tuple(tgt), tuple(float(x) for x in w), vocab, Joint(p, f"translate {source!r}"))


def toy_translation_table(eps: float = 0.0) -> list[TranslationEntry]:
    """English -> German sources, each with several valid translations (multi-modal targets).

    Mixing two valid targets position by position gives invalid outputs ("danke dank ."), the
    classic failure of one-step parallel decoding.
    """
    return [
        translation_entry("thank you", {"vielen dank .": 0.5, "danke schön .": 0.3, "danke sehr .": 0.2}, eps),
        translation_entry("a man rides a bike",
                          {"ein mann fährt rad": 0.4, "ein mann radelt .": 0.35, "ein herr fährt fahrrad": 0.25}, eps),
        translation_entry("good morning", {"guten morgen": 0.6, "morgen !": 0.25, "hallo zusammen": 0.15}, eps),
    ]
