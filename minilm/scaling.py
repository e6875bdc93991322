"""A mini scaling-law study: how a GPT's validation loss falls with its size N and its training tokens D.

Kaplan et al. 2020 ("Scaling Laws for Neural Language Models", arXiv:2001.08361, section 1.2,
eqs. 1.1-1.2) found that a language model's test loss is a power law in the number of
non-embedding parameters N (trained to convergence on enough data) and in the tokens D
(a large model, early-stopped):

    L(N) = (N_c / N)^alpha_N,   alpha_N ~ 0.076        L(D) = (D_c / D)^alpha_D,   alpha_D ~ 0.095

Hoffmann et al. 2022 ("Training Compute-Optimal Large Language Models", the Chinchilla paper,
arXiv:2203.15556, section 3.3, "Approach 3", eq. 2) fitted one law for both, with a floor E that
no model size or data removes (the entropy of the text itself):

    L(N, D) = E + A / N^alpha + B / D^beta,   E = 1.69, A = 406.4, B = 410.7, alpha = 0.34, beta = 0.28

At a fixed token budget D that is a N^-alpha + c with c = E + B / D^beta, and at a fixed size N it
is b D^-beta + c with c = E + A / N^alpha. So this module fits, to a handful of our own runs,

    L(x) = a x^-alpha + c

with x = N (sizes at one token budget) or x = D (budgets at one size). Kaplan's own fits have no
constant (c = 0): his models were far above the floor; ours are not.

N is the non-embedding parameter count, as in Kaplan et al. (section 2.1, eq. 2.1, which leaves
out the embedding parameters): every parameter except the token table wte (which our GPT also
uses as its output layer, tied) and the position table wpe. Unlike Kaplan's N ~ 12 n_layer d^2 we
count the biases and LayerNorms too (exactly: n_layer (12 C^2 + 13 C) + 2 C). Kaplan's reason
for leaving the embeddings out (their figure 6: with them the trend depends on the number of
layers; without them the sizes fall on one curve) matters more in a tiny model, where the
tables are a large share of all parameters (45% of the study's smallest model).

Each run of the study uses one fixed recipe (STUDY_RECIPE): the pydoc corpus, character
tokens, the last 10% held out for validation, AdamW with warm-up and cosine decay
(`minilm.apps.small_gpt.train`), and exactly D training tokens; its score is the mean
cross-entropy (nats per character) over the whole validation split. The learning-rate schedule
is stretched to each run's length (Hoffmann et al., appendix B and figure A1: a cosine cycle
much longer than the run leaves the model worse trained than it could be at that length).

Measured (`python benchmarks/scaling_laws.py`, results in benchmarks/results/scaling_laws.json):
seven sizes from N = 3,312 to 793,344 at 2^21 tokens give alpha = 0.256 with c = 0.962 nats per
character (0.210 to 0.462 with one size left out); six budgets for the N = 150,080 model give
alpha = 0.190 with c at its bound 0 (no floor reached yet).
"""
import dataclasses
import math
import time

import numpy as np

from minilm.models.gpt import GPT
from minilm.models.gpt_config import GPTConfig

# ----- published values, to set our exponents beside ------------------------------------------
REFERENCES = {
    "kaplan2020": {
        "citation": "Kaplan et al. 2020, Scaling Laws for Neural Language Models, arXiv:2001.08361, "
                    "section 1.2, eqs. (1.1) and (1.2)",
        "form": "L(N) = (N_c/N)^alpha_N (converged, enough data); L(D) = (D_c/D)^alpha_D (large model, early stop); "
                "N = non-embedding parameters, loss in nats per BPE token on WebText2",
        "alpha_N": 0.076, "N_c": 8.8e13, "alpha_D": 0.095, "D_c": 5.4e13,
    },
    "hoffmann2022": {
        "citation": "Hoffmann et al. 2022, Training Compute-Optimal Large Language Models (Chinchilla), "
                    "arXiv:2203.15556, section 3.3 (Approach 3), eq. (2) and the fitted values given there",
        "form": "L(N, D) = E + A/N^alpha + B/D^beta; N = all parameters, loss in nats per token on MassiveText",
        "E": 1.69, "A": 406.4, "B": 410.7, "alpha": 0.34, "beta": 0.28,
    },
}


# ----- N: the non-embedding parameter count -----------------------------------------------------
def non_embedding_parameters(model_or_config):
    """Parameters of a GPT (or GPTConfig) other than the token table wte and the position table wpe.

    Kaplan et al.'s N: n_layer (12 C^2 + 13 C) + 2 C with biases (the blocks and the final
    LayerNorm). Not GPT.num_parameters(non_embedding=True), which follows nanoGPT and keeps wte
    because it doubles as the output layer.
    """
    config = model_or_config.config if isinstance(model_or_config, GPT) else model_or_config
    if not isinstance(config, GPTConfig):
        raise TypeError(f"non_embedding_parameters: expected a GPT or GPTConfig, got {type(model_or_config).__name__}")
    return config.num_parameters(non_embedding=False) - (config.vocab_size + config.block_size) * config.n_embd


# ----- the fit L(x) = a x^-alpha + c -------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class PowerLawFit:
    """L(x) = a x^-alpha + c, fitted to n points with residual sum of squares rss (in loss units)."""
    a: float
    alpha: float
    c: float
    rss: float
    n: int

    def __call__(self, x):
        return self.a * np.asarray(x, dtype=np.float64) ** -self.alpha + self.c

    def to_dict(self):
        return dataclasses.asdict(self)


def _check_points(x, loss, where):
    x, loss = np.asarray(x, dtype=np.float64), np.asarray(loss, dtype=np.float64)
    if x.ndim != 1 or loss.shape != x.shape:
        raise ValueError(f"{where}: x and loss must be 1-D of the same length, got shapes {x.shape} and {loss.shape}")
    if x.size < 3:
        raise ValueError(f"{where}: L(x) = a x^-alpha + c has 3 parameters and needs at least 3 points, got {x.size}")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(loss))):
        raise ValueError(f"{where}: x and loss must be finite numbers")
    if np.any(x <= 0) or np.any(loss <= 0):
        raise ValueError(f"{where}: x and loss must be > 0 (a power law lives on log axes), got "
                         f"min x {x.min():g}, min loss {loss.min():g}")
    if np.unique(x).size < 3:
        raise ValueError(f"{where}: need at least 3 distinct x values, got {np.unique(x).size}")
    return x, loss


def _best_a_c(u, loss):
    """For fixed alpha, with u = (x/x0)^-alpha: least squares of loss = a u + c, with a >= 0 and c >= 0."""
    design = np.stack([u, np.ones_like(u)], axis=1)                            # (n, 2)
    (a, c), *_ = np.linalg.lstsq(design, loss, rcond=None)
    if c < 0:                                                                  # the loss is not below 0: c = 0
        a, c = float(u @ loss / (u @ u)), 0.0
    if a < 0:                                                                  # a rising "law": flat at the mean
        a, c = 0.0, float(loss.mean())
    return a, c, float(np.sum((a * u + c - loss) ** 2))


def fit_power_law(x, loss, alpha_range=(1e-3, 4.0), grid=400):
    """Least-squares fit of L(x) = a x^-alpha + c (a, c >= 0), NumPy only; returns a PowerLawFit.

    The method is variable projection (Golub & Pereyra 1973): for a fixed alpha the model is
    linear in (a, c), so the best a and c, and the residual sum of squares rss(alpha), come from
    a two-column linear least squares. That leaves a one-dimensional search over alpha: rss is
    evaluated on a log-spaced grid of `grid` values in alpha_range, and the best grid point's
    bracket is narrowed by golden-section search to ~1e-10. The squares are of the loss itself
    (not of log(L - c)), so every point weighs the same in nats.

    x is divided by its geometric mean x0 before fitting (a' (x/x0)^-alpha + c, then
    a = a' x0^alpha), which keeps the two columns well scaled for x in the millions.

    A flat or rising set of losses has no decreasing power law: ValueError. A small alpha with a
    large a and a negative-going c can fit few noisy points almost as well as the best fit; see
    leave_one_out for how much the exponent moves.
    """
    x, loss = _check_points(x, loss, "fit_power_law")
    lo, hi = alpha_range
    if not 0 < lo < hi:
        raise ValueError(f"fit_power_law: alpha_range must be 0 < low < high, got {alpha_range}")
    x0 = float(np.exp(np.mean(np.log(x))))
    logs = np.log(x / x0)

    def rss(alpha):
        return _best_a_c(np.exp(-alpha * logs), loss)[2]

    alphas = np.geomspace(lo, hi, grid)
    values = np.array([rss(al) for al in alphas])
    k = int(np.argmin(values))
    left, right = alphas[max(k - 1, 0)], alphas[min(k + 1, grid - 1)]
    ratio = (math.sqrt(5) - 1) / 2
    p, q = right - ratio * (right - left), left + ratio * (right - left)
    fp, fq = rss(p), rss(q)
    while right - left > 1e-10 * max(1.0, right):
        if fp < fq:
            right, q, fq = q, p, fp
            p = right - ratio * (right - left)
            fp = rss(p)
        else:
            left, p, fp = p, q, fq
            q = left + ratio * (right - left)
            fq = rss(q)
    alpha = (left + right) / 2
    a, c, best = _best_a_c(np.exp(-alpha * logs), loss)
    if a <= 0:
        raise ValueError("fit_power_law: the loss does not fall with x, so no a x^-alpha + c with a, alpha > 0 "
                         f"fits it (losses {np.round(loss, 4).tolist()} at x {x.tolist()})")
    return PowerLawFit(a=float(a * x0 ** alpha), alpha=float(alpha), c=float(c), rss=best, n=int(x.size))


def leave_one_out(x, loss, **kw):
    """The fits with each point left out in turn (how much one point moves alpha); needs >= 4 points."""
    x, loss = _check_points(x, loss, "leave_one_out")
    if x.size < 4:
        raise ValueError(f"leave_one_out: leaving one of {x.size} points out leaves too few for a 3-parameter fit")
    keep = ~np.eye(x.size, dtype=bool)
    return [fit_power_law(x[k], loss[k], **kw) for k in keep]


# ----- one run of the study ----------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class StudyRecipe:
    """Everything but the size, the token budget and the seed: the same for every run of the study."""
    corpus: str = "pydoc"
    val_fraction: float = 0.1
    seq_len: int = 64
    batch_size: int = 16
    lr: float = 3e-3
    weight_decay: float = 0.1
    warmup_fraction: float = 0.05      # of the run's steps, so every run warms up the same share
    grad_clip: float = 1.0
    head_size: int = 16                # n_head = n_embd // head_size
    eval_batch_size: int = 64

    def to_dict(self):
        return dataclasses.asdict(self)


STUDY_RECIPE = StudyRecipe()


@dataclasses.dataclass
class StudyData:
    """The corpus as character ids: the training part, the held-out end, and the vocabulary size."""
    train_ids: np.ndarray
    val_ids: np.ndarray
    vocab_size: int


def load_study_data(recipe=STUDY_RECIPE):
    """Tokenize recipe.corpus with a character tokenizer and split off the last val_fraction."""
    from minilm.data import encode_to_array, load_corpus, split_text
    from minilm.tokenizers import CharTokenizer
    text = load_corpus(recipe.corpus)
    tokenizer = CharTokenizer.from_text(text)
    train_text, val_text = split_text(text, recipe.val_fraction)
    encode = lambda part: encode_to_array(tokenizer.encode(part), tokenizer.vocab_size)
    return StudyData(encode(train_text), encode(val_text), tokenizer.vocab_size)


def study_config(n_layer, n_embd, vocab_size, recipe=STUDY_RECIPE):
    """The GPTConfig of one size: no dropout (a few epochs at most), heads of recipe.head_size channels."""
    if n_embd % recipe.head_size:
        raise ValueError(f"study_config: n_embd={n_embd} must be a multiple of head_size={recipe.head_size}")
    return GPTConfig(vocab_size=vocab_size, n_layer=n_layer, n_head=n_embd // recipe.head_size, n_embd=n_embd,
                     block_size=recipe.seq_len, dropout=0.0)


def train_run(n_layer, n_embd, tokens, seed=0, data=None, recipe=STUDY_RECIPE):
    """Train one GPT for `tokens` training tokens with the study's recipe; a JSON-able dict of the run.

    steps = tokens // (batch_size * seq_len); D in the result is the tokens actually seen
    (steps * batch_size * seq_len). The seed sets the initial weights and the batches drawn.
    val_loss is the mean cross-entropy over every window of the validation split.
    """
    from minilm.apps.small_gpt import train
    from minilm.data import ARBatcher, iter_eval_batches
    from minilm.objectives import AutoregressiveLM
    per_step = recipe.batch_size * recipe.seq_len
    steps = int(tokens) // per_step
    if steps < 2:
        raise ValueError(f"train_run: {tokens} tokens is fewer than 2 steps of {per_step} tokens")
    data = load_study_data(recipe) if data is None else data
    config = study_config(n_layer, n_embd, data.vocab_size, recipe)
    cpu = time.process_time()
    model = GPT(config, generator=np.random.default_rng(seed))
    batcher = ARBatcher(data.train_ids, recipe.seq_len, recipe.batch_size, np.random.default_rng(seed + 1))
    warmup = max(1, round(recipe.warmup_fraction * steps))
    history = train(model, lambda rng: batcher.next_batch(), steps, lr=recipe.lr, weight_decay=recipe.weight_decay,
                    warmup=warmup, clip=recipe.grad_clip, seed=seed)
    model.eval()
    val = AutoregressiveLM().evaluate(model, iter_eval_batches(data.val_ids, recipe.seq_len, recipe.eval_batch_size))
    return {"n_layer": n_layer, "n_embd": n_embd, "n_head": config.n_head, "seed": seed,
            "N": non_embedding_parameters(config), "N_total": config.num_parameters(non_embedding=False),
            "D": steps * per_step, "steps": steps, "val_loss": round(val["val_loss"], 5),
            "train_loss_last50": round(float(np.mean(history["loss"][-50:])), 5),
            "cpu_seconds": round(time.process_time() - cpu, 2)}


# ----- the study's runs, fitted and drawn -----------------------------------------------------
def mean_loss_by(runs, key):
    """(x values, mean val_loss, number of seeds) per distinct run[key], x ascending."""
    xs = sorted({r[key] for r in runs})
    groups = [[r["val_loss"] for r in runs if r[key] == x] for x in xs]
    return np.array(xs, dtype=np.float64), np.array([np.mean(g) for g in groups]), [len(g) for g in groups]


def fit_study(study):
    """The two fits of a study dict (as benchmarks/scaling_laws.py writes it): L(N) and L(D), seeds averaged.

    Each fit also records the range of alpha over the leave-one-out refits.
    """
    fits = {}
    for name, sweep, key in (("L_of_N", "size_sweep", "N"), ("L_of_D", "token_sweep", "D")):
        x, loss, _ = mean_loss_by(study[sweep]["runs"], key)
        fit = fit_power_law(x, loss)
        loo = [f.alpha for f in leave_one_out(x, loss)] if x.size >= 4 else []
        fits[name] = {**fit.to_dict(), "x": key,
                      "leave_one_out_alpha": [min(loo), max(loo)] if loo else None}
    return fits


def plot_study(study, path=None, live=None, title=None):
    """Two log-log panels, loss vs N (fixed D) and loss vs D (fixed N): runs, seed means, fitted curves.

    live: optional list of train_run results (e.g. re-run in a notebook), drawn over the committed
    points in the panel their sweep belongs to (same D: the size panel). Returns the figure; saved
    to `path` if given.
    """
    import matplotlib
    if path is not None:
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FormatStrFormatter
    fits = study.get("fits") or fit_study(study)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    panels = (("size_sweep", "N", "L_of_N", "non-embedding parameters N"),
              ("token_sweep", "D", "L_of_D", "training tokens D (characters)"))
    for ax, (sweep, key, fit_name, label) in zip(axes, panels):
        runs = study[sweep]["runs"]
        ax.plot([r[key] for r in runs], [r["val_loss"] for r in runs], "o", color="C0", alpha=0.45,
                label="committed runs")
        x, loss, _ = mean_loss_by(runs, key)
        f = fits[fit_name]
        grid = np.geomspace(x.min() / 1.5, x.max() * 1.5, 200)
        ax.plot(grid, f["a"] * grid ** -f["alpha"] + f["c"], "-", color="C1",
                label=f"fit {f['a']:.3g} {key}^-{f['alpha']:.3f} + {f['c']:.3f}")
        if f["c"] > 0:                          # c = 0 (the fit at its bound) has no place on log axes
            ax.axhline(f["c"], color="C1", ls=":", lw=1, label=f"floor c = {f['c']:.3f}")
        if live and sweep == "size_sweep":
            ax.plot([r[key] for r in live], [r["val_loss"] for r in live], "x", color="C3", ms=10, mew=2,
                    label="re-run live")
        ax.set_xscale("log")
        ax.set_yscale("log")
        for axis in (ax.yaxis.set_major_formatter, ax.yaxis.set_minor_formatter):
            axis(FormatStrFormatter("%.1f"))
        ax.set_xlabel(label)
        ax.set_ylabel("validation loss (nats / char)")
        fixed = (f"D = {study['size_sweep']['D']:,} tokens" if sweep == "size_sweep" else
                 f"N = {runs[0]['N']:,} ({runs[0]['n_layer']} layers, width {runs[0]['n_embd']})")
        ax.set_title(f"loss vs {key} at {fixed}", fontsize=10)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    fig.suptitle(title or "A mini scaling-law study: character GPTs on pydoc", fontsize=11)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=110)
        plt.close(fig)
    return fig
