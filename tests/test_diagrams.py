"""minilm.diagrams: each conceptual diagram draws without error and returns a Figure with content.
Skipped cleanly where matplotlib is not installed (it is an optional dependency)."""
import importlib
import io

import pytest

matplotlib = pytest.importorskip("matplotlib")


@pytest.fixture(scope="module")
def diagrams():
    matplotlib.use("Agg", force=False)
    return importlib.import_module("minilm.diagrams")


def _png_bytes(fig):
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


@pytest.mark.parametrize("name, kwargs", [
    ("draw_attention_heads", {}),
    ("draw_attention_heads", {"num_heads": 1, "causal": False}),
    ("draw_attention_heads", {"num_heads": 4}),
    ("draw_block", {"norm_first": False}),
    ("draw_block", {"norm_first": True}),
    ("draw_training_loop", {}),
])
def test_diagram_returns_a_figure_that_renders(diagrams, name, kwargs):
    from matplotlib.figure import Figure
    fig = getattr(diagrams, name)(**kwargs)
    assert isinstance(fig, Figure)
    ax, = fig.axes
    assert len(ax.patches) >= 5 and len(ax.texts) >= 5          # boxes and their labels were drawn
    assert _png_bytes(fig).startswith(b"\x89PNG")


def test_block_diagram_names_the_module_attributes(diagrams):
    for norm_first in (False, True):
        texts = " ".join(t.get_text() for t in diagrams.draw_block(norm_first).axes[0].texts)
        for attr in ("self_attn", "ff", "norm1", "norm2", "dropout1", "dropout2"):
            assert attr in texts
    post = [t.get_text() for t in diagrams.draw_block(False).axes[0].texts]
    pre = [t.get_text() for t in diagrams.draw_block(True).axes[0].texts]
    # post-LN normalises after the add, pre-LN before the branch: norm1 comes after self_attn only in post-LN
    assert post.index("norm1: LayerNorm") > post.index("self_attn\nMultiHeadAttention")
    assert pre.index("norm1: LayerNorm") < pre.index("self_attn\nMultiHeadAttention")


def test_draws_into_a_given_axes(diagrams):
    from matplotlib.figure import Figure
    fig = Figure()
    ax_left, ax_right = fig.subplots(1, 2)
    assert diagrams.draw_block(False, ax=ax_left) is fig
    assert diagrams.draw_block(True, ax=ax_right) is fig
    assert len(ax_left.patches) > 0 and len(ax_right.patches) > 0


def test_importing_minilm_does_not_import_the_diagrams():
    import subprocess
    import sys
    code = "import sys, minilm; print('minilm.diagrams' in sys.modules, 'matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split()[0] == "False"
