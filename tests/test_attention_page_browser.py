"""The attention page in a real browser: Debian's chromium driven by Playwright (both installed by .ci/run).

Loads the page from file:// (no server), reads the heatmap's pixels, clicks another head and
checks that the pixels changed to that head's weights, hovers a token and checks the shading,
and saves a screenshot in $MINILM_ARTIFACTS (default: the test's tmp_path). Skips with the
reason when Playwright or chromium is missing.
"""
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from minilm import viz_attention
from minilm.models import GPT, GPTConfig
from minilm.tokenizers import CharTokenizer

sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright is not installed (pip install playwright)")

TEXT = 'def f(x): return "<b>" & x'
NAVY = np.array([8, 48, 107])


def find_chromium():
    path = os.environ.get("MINILM_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:
        pytest.skip("no chromium browser found (apt-get install chromium, or set MINILM_CHROMIUM)")
    return path


def expected_colour(w):
    """The page's colour scale: white at 0, navy at 1, linear (colour() in the page's script)."""
    return np.round(255 + (NAVY - 255) * np.asarray(w, np.float64)[..., None]).astype(int)


@pytest.fixture(scope="module")
def page_file(tmp_path_factory):
    tok = CharTokenizer.from_text(TEXT)
    model = GPT(GPTConfig(vocab_size=tok.vocab_size, n_layer=2, n_head=2, n_embd=16, block_size=32, dropout=0.0))
    for block in model.blocks:                      # peaked attention, so that heads differ visibly
        block.self_attn.in_proj.weight.data[...] *= 25
    data = viz_attention.model_page_data(model, tok, tok.encode(TEXT), title="browser test <&>")
    path = tmp_path_factory.mktemp("page") / "attention.html"
    viz_attention.write_page(path, data)
    return path, data


@pytest.fixture(scope="module")
def browser():
    executable = find_chromium()
    with sync_api.sync_playwright() as p:
        try:
            b = p.chromium.launch(executable_path=executable, headless=True, args=["--no-sandbox"])
        except Exception as err:                   # a chromium that cannot start here (no libraries...)
            pytest.skip(f"chromium at {executable} does not start: {str(err).splitlines()[0]}")
        yield b
        b.close()


READ_CELLS = """() => {
  const c = document.getElementById("heatmap");
  const x0 = +c.dataset.x0, y0 = +c.dataset.y0, s = +c.dataset.cell;
  const n = Math.round((c.height - y0 - 4) / s), m = Math.round((c.width - x0 - 4) / s);
  const px = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
  const out = [];
  for (let i = 0; i < n; i++) for (let j = 0; j < m; j++) {
    const x = Math.floor(x0 + (j + 0.5) * s), y = Math.floor(y0 + (i + 0.5) * s), k = 4 * (y * c.width + x);
    out.push([px[k], px[k + 1], px[k + 2]]);
  }
  return [n, m, out];
}"""


def read_cells(page):
    """The colour at the centre of every heatmap cell, as rendered: (T, T, 3)."""
    n, m, cells = page.evaluate(READ_CELLS)
    return np.array(cells).reshape(n, m, 3)


def test_click_a_head_and_hover_a_token(browser, page_file, tmp_path):
    path, data = page_file
    weights = data["attention"]                                           # (L, H, T, T)
    t = len(TEXT)
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    errors = []
    page.on("pageerror", lambda err: errors.append(str(err)))
    page.on("request", lambda req: errors.append("network: " + req.url) if not req.url.startswith("file:") else None)
    page.goto(path.as_uri())
    page.wait_for_selector("body[data-ready='1']", timeout=5000)
    assert page.title() == "browser test <&>"

    # the first head is shown: its pixels are its weights
    before = read_cells(page)
    assert before.shape == (t, t, 3)
    np.testing.assert_allclose(before, expected_colour(weights[0, 0]), atol=2)

    # click layer 1, head 1: the heatmap is redrawn with that head's weights
    assert np.abs(weights[1, 1] - weights[0, 0]).max() > 0.5              # (the two heads do differ)
    page.click("#head-1-1")
    after = read_cells(page)
    assert np.abs(after - before).max() > 100
    np.testing.assert_allclose(after, expected_colour(weights[1, 1]), atol=2)
    assert "selected" in page.get_attribute("#head-1-1", "class")
    assert "selected" not in page.get_attribute("#head-0-0", "class")

    # hover token q: every token is shaded by how much q attends to it (alpha = 0.85 w), none after q
    q = TEXT.index("&")
    page.hover(f".tok[data-index='{q}']")
    shades = page.evaluate("""() => Array.from(document.querySelectorAll(".tok")).map(s => {
        const m = getComputedStyle(s).backgroundColor.match(/rgba?\\(([^)]*)\\)/)[1].split(",").map(Number);
        return m.length === 4 ? m[3] : 1; })""")
    np.testing.assert_allclose(shades, 0.85 * weights[1, 1, q], atol=0.01)
    assert max(shades[q + 1:]) == 0                                        # causal: nothing after the query
    assert int(np.argmax(shades)) == int(np.argmax(weights[1, 1, q]))
    assert "query" in page.get_attribute(f".tok[data-index='{q}']", "class")
    assert page.text_content("#readout").startswith(f"query {q} ")

    # the logit lens table: one row per layer (+ the embeddings), one column per token
    assert page.locator("#lens tr").count() == 1 + 3
    out_dir = Path(os.environ.get("MINILM_ARTIFACTS") or tmp_path)
    out_dir.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(out_dir / "attention_page.png"), full_page=True)
    assert (out_dir / "attention_page.png").stat().st_size > 10_000
    assert errors == []                                                    # no script error, no network
    page.close()
