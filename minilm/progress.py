"""A dependency-free progress line: step, loss, tokens per second, time left."""
import sys
import time


def format_seconds(seconds):
    seconds = int(max(seconds, 0))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else (f"{m}m{s:02d}s" if m else f"{s}s")


class ProgressBar:
    """Redraws one line in a terminal; prints a plain line every `every` steps elsewhere (logs, CI)."""

    def __init__(self, total, start=0, every=50, stream=None, width=24):
        self.total, self.step, self.every, self.width = total, start, every, width
        self.stream = stream if stream is not None else sys.stderr
        self.interactive = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.start_step, self.start_time = start, time.perf_counter()

    def update(self, step, **fields):
        self.step = step
        done = step - self.start_step
        elapsed = time.perf_counter() - self.start_time
        eta = elapsed / done * (self.total - step) if done > 0 else 0.0
        filled = int(self.width * step / max(self.total, 1))
        bar = "#" * filled + "." * (self.width - filled)
        parts = [f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in fields.items()]
        line = f"step {step:>6}/{self.total} [{bar}] " + " | ".join(parts) + f" | left {format_seconds(eta)}"
        if self.interactive:
            self.stream.write("\r" + line[:200].ljust(120))
            self.stream.flush()
        elif step % self.every == 0 or step == self.total:
            self.stream.write(line + "\n")
            self.stream.flush()

    def write(self, message):
        """Print a message on its own line without garbling the bar."""
        self.stream.write(("\n" if self.interactive else "") + message + "\n")
        self.stream.flush()

    def close(self):
        if self.interactive:
            self.stream.write("\n")
            self.stream.flush()
