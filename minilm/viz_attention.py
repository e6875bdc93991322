"""One self-contained HTML page showing every attention head of a model on one text.

    minilm viz attention runs/gpt-baby --text "def f(x):" --out attention.html

The page needs no server and no network: its CSS and JavaScript are inline
and the data is embedded as JSON in a <script type="application/json"
id="attention-data"> element (read it back with `read_page_data`). Opened in a
browser it shows

* a grid of thumbnails, one per layer (rows) and head (columns): click one to
  choose it;
* that head's attention as a heatmap, one row per query token, one column per
  key token, white = 0 to dark blue = 1 (linear, so equal colours are equal
  weights); hovering a cell names the two tokens and the weight;
* the text as a strip of tokens: hovering a token shades every token by how
  much the hovered one attends to it in the chosen head;
* for a model with an LM head, the logit lens (minilm.interpret): each layer's
  most likely token at each position.

The weights are embedded exactly: every float32 is written with 9 significant
digits, which always reads back to the same float32. Tokens can hold any
text (<, &, quotes, "</script>"): the JSON's <, > and & are written as \\u003c,
\\u003e and \\u0026, so the data cannot end its element early, and the page's
script only ever puts tokens into the page as text (textContent), never as HTML.
"""
import html
import json
import re

import numpy as np

from minilm.io.atomic import atomic_write_text

DATA_ID = "attention-data"
MAX_VALUES = 4_000_000    # attention weights embedded at most (~45 MB of HTML); beyond it a browser struggles


def page_data(attentions, tokens, query_tokens=None, title="attention", lens=None, causal=False):
    """The dict the page embeds. attentions: (L, H, Tq, Tk) probabilities; tokens: the Tk key tokens;
    query_tokens: the Tq query tokens (default: the same, self-attention; cross-attention differs);
    lens: optional {"kind": str, "layers": [names], "top": [[[token, p], ...] per position] per layer,
    "targets": the real next tokens or None}."""
    a = np.asarray(attentions)
    query_tokens = list(tokens if query_tokens is None else query_tokens)
    tokens = list(tokens)
    if a.ndim != 4 or a.shape[2:] != (len(query_tokens), len(tokens)):
        raise ValueError(f"page_data: attentions must have shape (layers, heads, {len(query_tokens)} queries, "
                         f"{len(tokens)} keys), got {a.shape}")
    if a.size > MAX_VALUES:
        raise ValueError(f"page_data: {a.size:,} attention weights (shape {a.shape}) are more than a page "
                         f"can hold ({MAX_VALUES:,}); use a shorter text")
    if not np.isfinite(a).all():
        raise ValueError("page_data: the attention weights contain NaN or infinity")
    if not all(isinstance(t, str) for t in tokens + query_tokens):
        raise TypeError("page_data: tokens must be strings")
    return {"title": str(title), "shape": list(a.shape), "attention": a.astype(np.float32),
            "tokens": tokens, "query_tokens": query_tokens, "causal": bool(causal), "lens": lens}


def _json_for_script(data):
    """JSON text that is safe inside a <script> element; the attention array written as float32 with
    9 significant digits (exact round trip) rather than Python's 17-digit float64 repr."""
    values = np.asarray(data["attention"], np.float32).ravel()
    numbers = ",".join(np.char.mod("%.9g", values).tolist())
    rest = {k: v for k, v in data.items() if k != "attention"}
    text = '{"attention":[' + numbers + "]," + json.dumps(rest, ensure_ascii=False)[1:]
    # < > & appear only inside JSON strings (numbers and punctuation have none), where \\u003c etc.
    # mean the same characters: the parsed data is unchanged, and "</script>" cannot occur.
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def read_page_data(page_html):
    """The data embedded in a page written by write_page: a dict with "attention" as a float32
    array of shape data["shape"]."""
    m = re.search(r'<script type="application/json" id="' + DATA_ID + r'">(.*?)</script>', page_html, re.S)
    if m is None:
        raise ValueError(f"read_page_data: no <script id={DATA_ID!r}> element in the page")
    data = json.loads(m.group(1))
    data["attention"] = np.asarray(data["attention"], np.float32).reshape(data["shape"])
    return data


def render_page(data):
    """The whole HTML document (a str) for page_data(...)'s dict."""
    values = {"TITLE": html.escape(data["title"]), "DATA": _json_for_script(data), "DATA_ID": DATA_ID}
    # one pass: a title or token that happens to contain "%DATA%" is not substituted again
    return re.sub(r"%(TITLE|DATA_ID|DATA)%", lambda m: values[m.group(1)], _TEMPLATE)


def model_page_data(model, tokenizer, ids, title="attention", k=3):
    """page_data for one token sequence run through a GPT or BERT (minilm.interpret.trace), with the
    logit lens's top-k tokens per layer and position when the model has an LM head."""
    from minilm import interpret
    tr = interpret.trace(model, ids)
    tokens = interpret.token_strings(tokenizer, tr.ids)
    lens = None
    if tr.lens_logits is not None:
        top_ids, top_p = interpret.top_k(tr.lens_logits, k)
        top = [[[[s, round(float(p), 4)] for s, p in zip(interpret.token_strings(tokenizer, ids_), ps)]
                for ids_, ps in zip(layer_ids, layer_p)] for layer_ids, layer_p in zip(top_ids, top_p)]
        lens = {"kind": "next token" if tr.causal else "token at the position",
                "layers": ["embeddings"] + [f"after layer {l}" for l in range(len(top) - 1)],
                "top": top, "targets": tokens[1:] + [None] if tr.causal else tokens}
    return page_data(tr.attentions, tokens, title=title, lens=lens, causal=tr.causal)


def write_page(path, data):
    """Write the page atomically (the old file or the complete new one, never half a page)."""
    atomic_write_text(path, render_page(data))
    return path


_TEMPLATE = r"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>%TITLE%</title>
<style>
body { font-family: system-ui, sans-serif; margin: 16px; color: #222; }
h1 { font-size: 18px; margin: 0 0 8px; }
.note { color: #555; font-size: 13px; margin: 4px 0 10px; }
#layout { display: flex; gap: 24px; align-items: flex-start; flex-wrap: wrap; }
#heads { border-collapse: collapse; font-size: 12px; }
#heads td, #heads th { padding: 2px; text-align: center; }
canvas.thumb { border: 2px solid #ddd; cursor: pointer; display: block; image-rendering: pixelated; }
canvas.thumb.selected { border-color: #d62728; }
#heatmap { border: 1px solid #ccc; }
#readout { font-family: monospace; font-size: 13px; min-height: 1.4em; margin: 6px 0; white-space: pre; }
#tokens { font-family: monospace; font-size: 15px; line-height: 2.1; max-width: 900px; margin: 12px 0; }
.tok { padding: 2px 1px; margin: 0 1px; border-radius: 3px; cursor: default; white-space: pre;
       border: 1px solid #eee; background-color: rgba(8, 48, 107, 0); }
.tok.query { outline: 2px solid #d62728; }
#lens { border-collapse: collapse; font-family: monospace; font-size: 12px; margin-top: 8px; }
#lens td, #lens th { border: 1px solid #ddd; padding: 1px 4px; white-space: pre; }
#lens td.hit { font-weight: bold; color: #1a7f37; }
</style>
</head>
<body>
<h1>%TITLE%</h1>
<div class="note" id="summary"></div>
<div id="layout">
  <div>
    <div class="note">layer (row) &times; head (column): click to choose</div>
    <table id="heads"></table>
  </div>
  <div>
    <div class="note" id="chosen"></div>
    <canvas id="heatmap"></canvas>
    <div id="readout"></div>
  </div>
</div>
<div class="note">Hover a token to shade what it attends to in the chosen head (darker = more).</div>
<div id="tokens"></div>
<div id="lens-section"></div>
<script type="application/json" id="%DATA_ID%">%DATA%</script>
<script>
"use strict";
const data = JSON.parse(document.getElementById("%DATA_ID%").textContent);
const [L, H, TQ, TK] = data.shape;
const A = data.attention;                                  // flat [layer][head][query][key]
const keys = data.tokens, queries = data.query_tokens, selfAttention = TQ === TK && keys.every((t, i) => t === queries[i]);
const state = { layer: 0, head: 0, query: -1 };

function weight(l, h, i, j) { return A[((l * H + h) * TQ + i) * TK + j]; }
// white (0) -> dark blue (1), linear in the weight: the same formula as the tests' expected colours
function colour(w) {
  const c = [255 + (8 - 255) * w, 255 + (48 - 255) * w, 255 + (107 - 255) * w].map(Math.round);
  return "rgb(" + c.join(",") + ")";
}
// a token made visible, as minilm.interpret.show_token does: \n, \t, \r, a space as \u2423, and any
// other control or separator character as a \u escape of its code point (four hex digits)
const VISIBLE = { "\n": "\\n", "\t": "\\t", "\r": "\\r", " ": "\u2423" };
function show(t) {
  return Array.from(t).map(c => VISIBLE[c] || (/[\p{C}\p{Z}]/u.test(c) ?
    "\\u" + c.codePointAt(0).toString(16).padStart(4, "0") : c)).join("");
}
function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined) e.textContent = text;            // text, never HTML
  if (cls) e.className = cls;
  return e;
}

// ---- the heatmap: cells of `cell` pixels, after room for the labels --------------------------
const heat = document.getElementById("heatmap");
const cell = Math.max(4, Math.min(24, Math.floor(560 / Math.max(TQ, TK))));
const labelled = cell >= 10;
const margin = labelled ? 80 : 4;
heat.width = margin + TK * cell + 4;
heat.height = margin + TQ * cell + 4;
heat.dataset.x0 = margin; heat.dataset.y0 = margin; heat.dataset.cell = cell;

function drawMatrix(ctx, l, h, x0, y0, size) {
  for (let i = 0; i < TQ; i++) for (let j = 0; j < TK; j++) {
    ctx.fillStyle = colour(weight(l, h, i, j));
    ctx.fillRect(x0 + j * size, y0 + i * size, size, size);
  }
}
function drawHeatmap() {
  const ctx = heat.getContext("2d");
  ctx.fillStyle = "#fff"; ctx.fillRect(0, 0, heat.width, heat.height);
  drawMatrix(ctx, state.layer, state.head, margin, margin, cell);
  if (labelled) {
    ctx.fillStyle = "#222"; ctx.font = Math.min(12, cell - 1) + "px monospace";
    ctx.textAlign = "right"; ctx.textBaseline = "middle";
    for (let i = 0; i < TQ; i++) ctx.fillText(show(queries[i]).slice(0, 10), margin - 4, margin + (i + 0.5) * cell);
    for (let j = 0; j < TK; j++) {
      ctx.save(); ctx.translate(margin + (j + 0.5) * cell, margin - 4); ctx.rotate(-Math.PI / 2);
      ctx.textAlign = "left"; ctx.fillText(show(keys[j]).slice(0, 10), 0, 0); ctx.restore();
    }
  }
  if (state.query >= 0) {                                  // the hovered query's row
    ctx.strokeStyle = "#d62728"; ctx.lineWidth = 2;
    ctx.strokeRect(margin - 1, margin + state.query * cell - 1, TK * cell + 2, cell + 2);
  }
  document.getElementById("chosen").textContent =
    "layer " + state.layer + ", head " + state.head + ": rows = queries, columns = keys";
}

// ---- the layer x head grid of thumbnails -----------------------------------------------------
const thumbs = [];
const table = document.getElementById("heads");
const header = table.insertRow();
header.appendChild(el("th", ""));
for (let h = 0; h < H; h++) header.appendChild(el("th", "head " + h));
for (let l = 0; l < L; l++) {
  const row = table.insertRow();
  row.appendChild(el("th", "layer " + l));
  for (let h = 0; h < H; h++) {
    const c = el("canvas", undefined, "thumb");
    const s = Math.max(1, Math.floor(48 / Math.max(TQ, TK)));
    c.width = TK * s; c.height = TQ * s;
    c.style.width = "48px"; c.style.height = Math.round(48 * TQ / TK) + "px";
    c.id = "head-" + l + "-" + h; c.dataset.layer = l; c.dataset.head = h;
    c.title = "layer " + l + ", head " + h;
    drawMatrix(c.getContext("2d"), l, h, 0, 0, s);
    c.addEventListener("click", () => choose(l, h));
    row.insertCell().appendChild(c);
    thumbs.push(c);
  }
}
function choose(l, h) {
  state.layer = l; state.head = h;
  for (const c of thumbs) c.classList.toggle("selected", +c.dataset.layer === l && +c.dataset.head === h);
  drawHeatmap();
  shadeTokens();
}

// ---- the token strip: hover a query token to shade the keys it attends to -------------------
const strip = document.getElementById("tokens");
const spans = keys.map((t, j) => {
  const s = el("span", show(t), "tok");
  s.dataset.index = j;
  strip.appendChild(s);
  return s;
});
function shadeTokens() {
  const readout = document.getElementById("readout");
  spans.forEach((s, j) => {
    const w = state.query >= 0 ? weight(state.layer, state.head, state.query, j) : 0;
    s.style.backgroundColor = "rgba(8, 48, 107, " + (0.85 * w).toFixed(4) + ")";
    s.style.color = w > 0.5 ? "#fff" : "";
    s.classList.toggle("query", selfAttention && j === state.query);
  });
  if (state.query < 0) readout.textContent = "";
}
if (selfAttention) spans.forEach((s, i) => {
  s.addEventListener("mouseenter", () => {
    state.query = i; drawHeatmap(); shadeTokens();
    document.getElementById("readout").textContent = "query " + i + " " + JSON.stringify(queries[i]);
  });
  s.addEventListener("mouseleave", () => { state.query = -1; drawHeatmap(); shadeTokens(); });
});
heat.addEventListener("mousemove", (ev) => {
  const r = heat.getBoundingClientRect();
  const j = Math.floor((ev.clientX - r.left - margin) / cell), i = Math.floor((ev.clientY - r.top - margin) / cell);
  const readout = document.getElementById("readout");
  if (i < 0 || j < 0 || i >= TQ || j >= TK) { readout.textContent = ""; return; }
  readout.textContent = "query " + i + " " + JSON.stringify(queries[i]) + " -> key " + j + " " +
    JSON.stringify(keys[j]) + ": " + weight(state.layer, state.head, i, j).toFixed(4);
});

// ---- the logit lens ---------------------------------------------------------------------------
if (data.lens) {
  const lens = data.lens, section = document.getElementById("lens-section");
  section.appendChild(el("h1", "Logit lens"));
  section.appendChild(el("div", "Each layer's most likely " + lens.kind + " at each position, read off the residual " +
    "stream with the model's final LayerNorm and output head (shade = its probability; bold green = the real one; " +
    "hover for the top " + lens.top[0][0].length + ").", "note"));
  const t = el("table"); t.id = "lens";
  const head = t.insertRow();
  head.appendChild(el("th", "input"));
  queries.forEach(q => head.appendChild(el("th", show(q))));
  lens.top.forEach((row, l) => {
    const r = t.insertRow();
    r.appendChild(el("th", lens.layers[l]));
    row.forEach((top, i) => {
      const c = r.insertCell();
      c.textContent = show(top[0][0]);
      c.title = top.map(([tok, p]) => JSON.stringify(tok) + " " + p.toFixed(3)).join("\n");
      c.style.backgroundColor = "rgba(8, 48, 107, " + (0.35 * top[0][1]).toFixed(3) + ")";
      if (lens.targets && lens.targets[i] === top[0][0]) c.className = "hit";
    });
  });
  section.appendChild(t);
}

document.getElementById("summary").textContent = L + " layers x " + H + " heads over " + TQ + " query and " + TK +
  " key tokens" + (data.causal ? " (causal: a token sees only itself and the tokens before it)" : "") + ".";
choose(0, 0);
document.body.dataset.ready = "1";
</script>
</body>
</html>
"""
