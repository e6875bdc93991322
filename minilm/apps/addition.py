"""Multi-digit addition by a small GPT: direct answers, and answers after a scratchpad.

The task is minGPT's adder (Karpathy, projects/adder): two n-digit operands,
zero-padded to a fixed width, then their sum's n + 1 digits, *reversed*:

    123+045=8610          123 + 45 = 168 = "0168", written lowest digit first

Why reversed: a person adds from the right, because digit i of the sum needs
the carry out of digit i - 1. Written left to right, the first digit the model
must produce is the one that depends on every carry; written reversed, each
digit's carry comes from digits the model has already written, so one
left-to-right pass with a little attention suffices (Lee et al. 2023,
"Teaching arithmetic to small transformers", make the same point).

The scratchpad (Nye et al. 2021, "Show your work: scratchpads for intermediate
computation with language models"; Wei et al. 2022, chain of thought) makes
the model write the column sums before the answer, lowest column first, each
as "a+b+carry_in=two-digit total":

    987+654=7+4+0=11,8+5+1=14,9+6+1=16;1461

The last digit of each total is a digit of the answer and the first is the next
column's carry, so every step is a local one-digit sum of tokens that sit just
before it. The answer after ";" is scored; it costs 9 tokens per digit more.

Problem sets are deterministic: a seed picks the held-out test problems, and
training draws fresh random problems that are never among them. Only answer
(and scratchpad) tokens are scored during training (see small_gpt.pack).
"""
import numpy as np

from minilm.apps import small_gpt
from minilm.tokenizers.char import CharTokenizer

# digits, the two operators, the scratchpad's separators, and "_" for padding
TOKENIZER = CharTokenizer("0123456789+=,;_")
PAD_ID = TOKENIZER.stoi["_"]
MAX_DIGITS = 9


def _check_digits(n, owner):
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not 1 <= n <= MAX_DIGITS:
        raise ValueError(f"{owner}: the digit count must be an int in [1, {MAX_DIGITS}], got {n!r}")


def _check_operands(a, b, n, owner):
    _check_digits(n, owner)
    for name, v in (("a", a), ("b", b)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or not 0 <= v < 10 ** n:
            raise ValueError(f"{owner}: {name}={v!r} is not an integer with at most {n} digits")


def prompt(a, b, n):
    """'123+045=': both operands zero-padded to n digits."""
    _check_operands(a, b, n, "prompt")
    return f"{int(a):0{n}d}+{int(b):0{n}d}="


def answer(a, b, n):
    """The sum's n + 1 digits, lowest first: answer(123, 45, 3) == '8610'."""
    _check_operands(a, b, n, "answer")
    return f"{int(a) + int(b):0{n + 1}d}"[::-1]


def scratchpad(a, b, n):
    """The column sums, lowest column first, then ';': '7+4+0=11,8+5+1=14,9+6+1=16;' for 987+654."""
    _check_operands(a, b, n, "scratchpad")
    da, db = f"{int(a):0{n}d}"[::-1], f"{int(b):0{n}d}"[::-1]
    steps, carry = [], 0
    for x, y in zip(da, db):
        total = int(x) + int(y) + carry
        steps.append(f"{x}+{y}+{carry}={total:02d}")
        carry = total // 10
    return ",".join(steps) + ";"


def target(a, b, n, with_scratchpad=False):
    """What the model must write after the prompt: the reversed answer, after the scratchpad if asked."""
    return (scratchpad(a, b, n) if with_scratchpad else "") + answer(a, b, n)


def target_length(n, with_scratchpad=False):
    """Tokens the model writes per problem: n + 1, plus 9 n for the scratchpad."""
    _check_digits(n, "target_length")
    return (n + 1) + (9 * n if with_scratchpad else 0)


def final_answer(text):
    """The answer part of a model's output: what follows the last ';' (all of it without one)."""
    return text.rsplit(";", 1)[-1]


def test_pairs(n, size=1000, seed=0):
    """`size` distinct (a, b) n-digit pairs (size, 2), the same for the same arguments."""
    _check_digits(n, "test_pairs")
    space = 10 ** (2 * n)
    if not 1 <= size <= space // 2:
        raise ValueError(f"test_pairs: size must be in [1, {space // 2}] for {n}-digit operands, got {size}")
    rng = np.random.default_rng([seed, n])
    keys = rng.choice(space, size=size, replace=False)                         # a * 10^n + b, no repeats
    return np.stack([keys // 10 ** n, keys % 10 ** n], axis=1).astype(np.int64)


def held_out_size(n, size=1000):
    """How many n-digit test problems to hold out: `size`, but at most a fifth of all pairs (20 for n = 1)."""
    _check_digits(n, "held_out_size")
    return min(size, 10 ** (2 * n) // 5)


def train_pairs(rng, n, count, held_out):
    """`count` random n-digit pairs (count, 2), none of them in `held_out` (rejection sampling)."""
    _check_digits(n, "train_pairs")
    banned = np.asarray(held_out, dtype=np.int64).reshape(-1, 2)
    banned_keys = banned[:, 0] * 10 ** n + banned[:, 1]
    out = np.empty((0, 2), dtype=np.int64)
    while len(out) < count:
        pairs = rng.integers(0, 10 ** n, size=(2 * count, 2))
        keep = ~np.isin(pairs[:, 0] * 10 ** n + pairs[:, 1], banned_keys)
        out = np.concatenate([out, pairs[keep]])
    return out[:count]


def encode_problems(pairs, digits, with_scratchpad=False):
    """Token ids of prompts and targets: two lists of lists (pairs (N, 2), digits (N,) or one int)."""
    digits = np.broadcast_to(np.asarray(digits), (len(pairs),))
    prompts = [TOKENIZER.encode(prompt(int(a), int(b), int(n))) for (a, b), n in zip(pairs, digits)]
    targets = [TOKENIZER.encode(target(int(a), int(b), int(n), with_scratchpad)) for (a, b), n in zip(pairs, digits)]
    return prompts, targets


def batch_sampler(train_digits, batch_size, held_out, with_scratchpad=False):
    """sample_batch(rng) -> (x, y) for small_gpt.train: each row's digit count drawn from train_digits.

    held_out: {n: test pairs (K, 2)} never to be drawn for training.
    """
    train_digits = tuple(int(n) for n in train_digits)
    for n in train_digits:
        _check_digits(n, "batch_sampler")

    def sample_batch(rng):
        digits = rng.choice(train_digits, size=batch_size)                     # (B,)
        pairs = np.empty((batch_size, 2), dtype=np.int64)
        for n in sorted(set(digits.tolist())):
            rows = digits == n
            pairs[rows] = train_pairs(rng, n, int(rows.sum()), held_out.get(n, np.empty((0, 2))))
        prompts, targets = encode_problems(pairs, digits, with_scratchpad)
        return small_gpt.pack(prompts, targets, PAD_ID)                        # (B, T), (B, T)

    return sample_batch


def block_size_for(n, with_scratchpad=False):
    """The context a model needs for n-digit problems: prompt 2n + 2 plus the target, minus 1."""
    return 2 * n + 2 + target_length(n, with_scratchpad) - 1


def exact_match(predictions, references):
    """The fraction of predictions equal to their reference strings."""
    predictions, references = list(predictions), list(references)
    if len(predictions) != len(references) or not references:
        raise ValueError(f"exact_match: need equal, non-zero counts, got {len(predictions)} and {len(references)}")
    return sum(p == r for p, r in zip(predictions, references)) / len(references)


def evaluate(model, pairs, n, with_scratchpad=False):
    """Greedy-decode every n-digit problem; returns {"accuracy", "digit_accuracy", "scratchpad_accuracy", "examples"}.

    accuracy: the answer after the scratchpad (or the whole output) equals the reversed sum.
    digit_accuracy: for each answer position, lowest digit first, the fraction right.
    scratchpad_accuracy: the whole output, scratchpad included, is exactly right (None if direct).
    """
    prompts, targets = encode_problems(pairs, n, with_scratchpad)
    out = small_gpt.greedy_answers(model, np.array(prompts), target_length(n, with_scratchpad))
    texts = [TOKENIZER.decode(row.tolist()) for row in out]
    wanted = [answer(int(a), int(b), n) for a, b in pairs]
    answers = [final_answer(t) for t in texts]
    # per answer position (lowest digit first): where in the number the errors are
    by_position = [float(np.mean([len(a) > i and a[i] == w[i] for a, w in zip(answers, wanted)]))
                   for i in range(n + 1)]
    result = {"accuracy": exact_match(answers, wanted), "digit_accuracy": by_position,
              "scratchpad_accuracy": None, "examples": []}
    if with_scratchpad:
        result["scratchpad_accuracy"] = exact_match(texts, [TOKENIZER.decode(t) for t in targets])
    for (a, b), text in list(zip(pairs, texts))[:5]:
        result["examples"].append({"prompt": prompt(int(a), int(b), n), "output": text,
                                   "correct": final_answer(text) == answer(int(a), int(b), n)})
    return result


def train_adder(train_digits, *, steps, batch_size=64, with_scratchpad=False, n_layer=2, n_head=4, n_embd=64,
                lr=1e-3, block_size=None, test_size=1000, seed=0, log_every=0, log=print):
    """Train one GPT on problems of the given digit counts; returns (model, history, held_out).

    held_out[n] are the test pairs of n digits (test_pairs(n, held_out_size(n, test_size), seed)), excluded
    from training for every n in train_digits; block_size defaults to what the largest trained count needs.
    """
    train_digits = tuple(int(n) for n in train_digits)
    held_out = {n: test_pairs(n, held_out_size(n, test_size), seed) for n in train_digits}
    block = block_size or block_size_for(max(train_digits), with_scratchpad)
    model = small_gpt.make_model(TOKENIZER.vocab_size, block, n_layer, n_head, n_embd, seed=seed)
    sample_batch = batch_sampler(train_digits, batch_size, held_out, with_scratchpad)
    history = small_gpt.train(model, sample_batch, steps, lr=lr, seed=seed, log_every=log_every, log=log)
    return model, history, held_out


def main(argv=None):
    """python -m minilm.apps.addition --digits 3 --steps 3000 [--scratchpad]: train, then score 1,000 held-out."""
    import argparse
    p = argparse.ArgumentParser(description="Train a small GPT to add n-digit numbers (answers reversed).")
    p.add_argument("--digits", type=int, default=3)
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--scratchpad", action="store_true", help="write the column sums before the answer")
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    model, history, held = train_adder((args.digits,), steps=args.steps, with_scratchpad=args.scratchpad,
                                       n_layer=args.layers, seed=args.seed, log_every=500)
    result = evaluate(model, held[args.digits], args.digits, args.scratchpad)
    print(f"exact match on {len(held[args.digits])} held-out {args.digits}-digit problems: "
          f"{result['accuracy']:.3f} ({history['cpu_seconds']:.0f} CPU s of training)")
    for ex in result["examples"]:
        print(f"  {ex['prompt']}{ex['output']}  {'right' if ex['correct'] else 'WRONG'}")


if __name__ == "__main__":
    main()
