"""Attention probabilities ``(layers, heads, tokens, tokens)`` as widgets: a head view, a
model view and a map.

- Head view: the tokens twice, attending ones on the left and attended ones on the
  right, and a line for each weight drawn (its opacity grows with the weight), in one
  colour per head; the coloured head chips pick the heads. Hovering a token shows only
  its lines; clicking it keeps them shown until "all lines" is clicked. This is HTML, SVG
  and CSS alone (`:hover`, radio inputs and `:has()`), so it works wherever the HTML is
  shown, with no script to run. The lines are the heaviest weights within a budget
  (`jupyter_flow.tensorview.attention_links`), each token's strongest always included.
- Model view: every layer and head as a thumbnail of its map, labelled by layer and
  head; clicking one opens that head in the head view.
- Map: the chosen heads' token-by-token map (their mean for several), with zoom and pan
  (`jupyter_flow.workbench.plots.Heatmap`).
"""

from __future__ import annotations

import base64
import html
import struct
import uuid
import zlib
from collections.abc import Sequence
from typing import Any

from jupyter_flow.tensorview import Links, as_array, attention_links, attention_thumbnail, token_axis
from jupyter_flow.values import dtype_name
from jupyter_flow.workbench.plots import Heatmap
from jupyter_flow.workbench.tensors import stats_html

__all__ = ["HEAD_COLOURS", "MODES", "AttentionView", "head_colour", "head_view_html", "thumbnail_png"]

#: One colour per head (cycled past twelve heads), in the head view, its chips and the model view.
HEAD_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b",
                "#e377c2", "#7f7f7f", "#bcbd22", "#17becf", "#393b79", "#ad494a")
MODES = {"heads": "head view", "model": "model view", "map": "map"}
ROW_PX = 16  # one token row of the head view
LINE_BUDGET = 2000  # lines a head view draws at most (about)
MIN_WEIGHT = 0.01  # lighter lines are all but invisible; each token still keeps its strongest
_OFF = "#eeeeee"


def head_colour(head: int) -> str:
    return HEAD_COLOURS[head % len(HEAD_COLOURS)]


def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _shown(token: str, position: int, limit: int = 18) -> str:
    text = token if token else str(position)
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def head_view_html(tokens: Sequence[str], padding: Sequence[bool], links: Links, *, uid: str, focus: int | None = None,
                   note: str = "") -> str:
    """The head view of one layer: two columns of `tokens` and the `links` between them as
    lines coloured by head. `focus` (a position) starts with that attending token's lines
    alone. Self-contained: its style is scoped by the class `uid`."""
    n = len(tokens)
    height = max(n, 1) * ROW_PX
    rules = [
        f".{uid} {{font-size:12px;font-family:var(--jp-code-font-family,monospace);color:#222}}",
        f".{uid} .jf-hv-grid {{display:grid;grid-template-columns:max-content minmax(160px,1fr) max-content;"
        f"max-height:640px;overflow:auto;border:1px solid #e0e0e0;border-radius:3px}}",
        f".{uid} .jf-hv-title {{position:sticky;top:0;background:#fff;z-index:1;font-size:11px;color:#555;padding:2px 6px;"
        f"border-bottom:1px solid #e0e0e0}}",
        f".{uid} .jf-hv-col {{display:flex;flex-direction:column}}",
        f".{uid} .jf-hv-tok {{height:{ROW_PX}px;line-height:{ROW_PX}px;padding:0 6px;white-space:nowrap;cursor:pointer;border-radius:3px}}",
        f".{uid} .jf-hv-left .jf-hv-tok {{text-align:right}}",
        f".{uid} .jf-hv-tok.jf-pad {{color:#9a9a9a}}",
        f".{uid} .jf-hv-tok:hover {{background:#dfe8fb}}",
        f".{uid} .jf-hv-tok:has(input:checked) {{background:#ffe08a;font-weight:bold}}",
        f".{uid} .jf-hv-note {{font-family:var(--jp-ui-font-family,sans-serif);font-size:11px;line-height:1.5;color:#555;margin:2px 0 4px}}",
        f".{uid} .jf-hv-all {{cursor:pointer;padding:0 6px;border:1px solid #bbb;border-radius:3px;margin-left:6px;"
        "background:#f5f5f5;color:#222;white-space:nowrap}",
        f".{uid} .jf-hv-all:has(input:checked) {{background:#e4ecfb;border-color:#8aa6d8}}",
        f".{uid} svg {{display:block}}",
        f".{uid} svg path {{fill:none;stroke-width:2px;vector-effect:non-scaling-stroke}}",
    ]
    rules += [f".{uid} path.h{h} {{stroke:{head_colour(h)}}}" for h in sorted(set(links.head))]
    # a token clicked (its radio checked) shows its lines alone; one hovered, its own too
    rules.append(f".{uid}:has(input.jf-hv-f:checked:not([value=all])) path {{visibility:hidden}}")
    rules += [f".{uid}:has(input[value=l{i}]:checked) path.s{i}, .{uid}:has(input[value=r{i}]:checked) path.t{i} "
              "{visibility:visible}" for i in range(n)]
    rules.append(f".{uid}:has(.jf-hv-tok:hover) path {{visibility:hidden}}")
    rules += [f".{uid}:has(.jf-l{i}:hover) path.s{i}, .{uid}:has(.jf-r{i}:hover) path.t{i} {{visibility:visible}}" for i in range(n)]

    def column(side: str, what: str) -> str:
        cells = []
        for i, (tok, pad) in enumerate(zip(tokens, padding)):
            checked = " checked" if side == "l" and focus == i else ""
            cls = f"jf-hv-tok jf-{side}{i}" + (" jf-pad" if pad else "")
            cells.append(f"<label class='{cls}' title='{i} {_esc(tok)} ({what})'>"
                         f"<input type='radio' name='focus' value='{side}{i}' class='jf-hv-f' hidden{checked}>{_esc(_shown(tok, i))}</label>")
        return "".join(cells)

    paths = "".join(
        f"<path class='s{s} t{t} h{h}' d='M0 {(s + 0.5) * ROW_PX:g}L1000 {(t + 0.5) * ROW_PX:g}' stroke-opacity='{min(1.0, w ** 0.5):.2f}'/>"
        for h, s, t, w in zip(links.head, links.source, links.target, links.weight))
    all_checked = "" if focus is not None else " checked"
    return (
        f"<style>{''.join(rules)}</style>"
        f"<form class='{uid} jf-head-view-body' autocomplete='off'>"
        f"<div class='jf-hv-note'>{_esc(note)}<label class='jf-hv-all'>"
        f"<input type='radio' name='focus' value='all' class='jf-hv-f' hidden{all_checked}>all lines</label></div>"
        "<div class='jf-hv-grid'>"
        "<div class='jf-hv-title'>attending</div><div class='jf-hv-title'></div><div class='jf-hv-title'>attended</div>"
        f"<div class='jf-hv-col jf-hv-left'>{column('l', 'attending')}</div>"
        f"<svg class='jf-hv-lines' viewBox='0 0 1000 {height}' preserveAspectRatio='none' width='100%' height='{height}'>{paths}</svg>"
        f"<div class='jf-hv-col jf-hv-right'>{column('r', 'attended')}</div>"
        "</div></form>"
    )


def thumbnail_png(weights: Any, colour: str, size: int = 64) -> bytes:
    """One head's map as a PNG image, white for no weight to `colour` for the largest."""
    import numpy as np

    shade = attention_thumbnail(weights, size)
    target = np.array([int(colour[i:i + 2], 16) for i in (1, 3, 5)], dtype=float)
    rgb = (255.0 - shade[..., None] * (255.0 - target)).round().astype(np.uint8)
    rows, cols = shade.shape
    raw = b"".join(b"\x00" + rgb[r].tobytes() for r in range(rows))

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", cols, rows, 8, 2, 0, 0, 0)  # 8-bit RGB
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")


class AttentionView:
    """Attention probabilities ``(layers, heads, tokens, tokens)``: a head view of one layer
    (the chosen heads' weights as lines between the tokens), a model view (every layer and
    head as a thumbnail; click one to open it) and a map. `head` is a head, a list of
    heads, or "all"; `mode` is "heads", "model" or "map"; `focus` an attending token's
    position whose lines alone are shown."""

    def __init__(self, value: Any, *, name: str = "attentions", tokens: Sequence[str] | None = None, layer: int = 0,
                 head: int | str | Sequence[int] = 0, mode: str = "heads", focus: int | None = None) -> None:
        import ipywidgets as w

        self.array = as_array(value)
        if self.array.ndim != 4:
            raise ValueError(f"{name}: attention probabilities are (layers, heads, tokens, tokens), not shape {self.array.shape}")
        layers, heads, n, _ = self.array.shape
        self.name = name
        self.axis = token_axis(tokens, n)
        self.uid = f"jf-hv-{uuid.uuid4().hex[:10]}"
        self.heads: list[int] = self._heads(head)
        self.focus: int | None = None
        self.links: Links | None = None
        self.model_view: ModelView | None = None
        self.map: Heatmap | None = None
        self._quiet = False
        self._check(layer, mode, focus)
        self.mode = w.ToggleButtons(options=[(label, key) for key, label in MODES.items()], value=mode,
                                    style={"button_width": "96px"})
        self.mode.add_class("jf-attention-mode")
        self.layer = w.IntSlider(value=layer, min=0, max=layers - 1, description="layer", continuous_update=False)
        self.layer.add_class("jf-attention-layer")
        self.chips = [self._chip(h) for h in range(heads)]
        self.all_button = w.Button(description="all heads", layout=w.Layout(width="auto"), tooltip="show every head of the layer")
        self.all_button.add_class("jf-head-all")
        self.all_button.on_click(lambda _b: self.show(head="all"))
        self.chip_bar = w.HBox([w.HTML("<span class='jf-note'>heads&nbsp;</span>"), *self.chips, self.all_button],
                               layout=w.Layout(flex_flow="row wrap", align_items="center"))
        self.chip_bar.add_class("jf-attention-heads")
        self.head_view = w.HTML("")
        self.head_view.add_class("jf-head-view")
        self.body = w.VBox([])
        self.layer.observe(lambda _c: self._changed(), names="value")
        self.mode.observe(lambda _c: self._changed(), names="value")
        head_html = stats_html(name, self.array, self.array.shape, dtype=dtype_name(value),
                               note=f"{layers} layers, {heads} heads, {n} tokens")
        self.widget = w.VBox([w.HTML(head_html), self.mode, w.HBox([self.layer, self.chip_bar],
                                                                 layout=w.Layout(flex_flow="row wrap", align_items="center")),
                              self.body])
        self.widget.add_class("jf-tensor-view")
        self.widget.add_class("jf-attention-view")
        self.focus = focus
        self._redraw()

    # -- choosing --------------------------------------------------------------------------------
    def _heads(self, head: int | str | Sequence[int]) -> list[int]:
        heads = self.array.shape[1]
        chosen: list[Any] = list(range(heads)) if head == "all" else [head] if isinstance(head, (int, str)) else list(head)
        for h in chosen:
            if not (isinstance(h, int) and 0 <= h < heads):
                raise ValueError(f"{self.name}: head {h!r} is out of range: each layer has {heads} heads (0 to {heads - 1}, or 'all')")
        return sorted({int(h) for h in chosen})

    def _check(self, layer: int, mode: str, focus: int | None) -> None:
        layers, _, n, _ = self.array.shape
        if not 0 <= layer < layers:
            raise ValueError(f"{self.name}: layer {layer} is out of range: the model has {layers} layers (0 to {layers - 1})")
        if mode not in MODES:
            raise ValueError(f"{self.name}: mode {mode!r} is not one of {', '.join(MODES)}")
        if focus is not None and not 0 <= focus < n:
            raise ValueError(f"{self.name}: focus {focus} is out of range: the input has {n} tokens (0 to {n - 1})")

    def show(self, layer: int | None = None, head: int | str | Sequence[int] | None = None, *, mode: str | None = None,
             focus: int | None = None) -> AttentionView:
        """Switch to a layer, heads (a head, a list, or "all"), a mode and a focused token."""
        layer = self.layer.value if layer is None else layer
        mode = self.mode.value if mode is None else mode
        self._check(layer, mode, focus)
        heads = self.heads if head is None else self._heads(head)
        self._quiet = True
        try:
            self.layer.value, self.mode.value = layer, mode
        finally:
            self._quiet = False
        self.heads, self.focus = heads, focus
        self._redraw()
        return self

    def _chip(self, head: int) -> Any:
        import ipywidgets as w

        chip = w.Button(description=str(head), tooltip=f"head {head}: show or hide its lines", layout=w.Layout(width="34px"))
        chip.add_class("jf-head-chip")
        chip.on_click(lambda _b: self._toggle(head))
        return chip

    def _toggle(self, head: int) -> None:
        if head in self.heads and len(self.heads) > 1:
            self.heads = [h for h in self.heads if h != head]
        elif head not in self.heads:
            self.heads = sorted([*self.heads, head])
        self._redraw()

    def _changed(self) -> None:
        if not self._quiet:
            self._redraw()

    # -- drawing ---------------------------------------------------------------------------------
    def _redraw(self) -> None:
        for h, chip in enumerate(self.chips):
            on = h in self.heads
            chip.style.button_color = head_colour(h) if on else _OFF
            chip.style.text_color = "#ffffff" if on else head_colour(h)
            chip.style.font_weight = "bold" if on else "normal"
            (chip.add_class if on else chip.remove_class)("jf-head-on")
        mode, layer = self.mode.value, self.layer.value
        self.layer.layout.display = "none" if mode == "model" else ""
        self.chip_bar.layout.display = "none" if mode == "model" else ""
        if mode == "heads":
            self._draw_heads(layer)
            self.body.children = [self.head_view]
        elif mode == "model":
            self.body.children = [self._model().widget]
            self._model().mark(layer, self.heads)
        else:
            self.body.children = [self._draw_map(layer).widget]

    def _draw_heads(self, layer: int) -> None:
        self.links = links = attention_links(self.array[layer], self.heads, budget=LINE_BUDGET, min_weight=MIN_WEIGHT)
        heads = ", ".join(map(str, self.heads))
        hidden = f"; {links.hidden} lighter ones (under {links.floor:.2g}) left out" if links.hidden else ""
        note = (f"layer {layer}, head{'s' if len(self.heads) > 1 else ''} {heads}: {len(links)} lines{hidden}. "
                "Hover a token to see its lines alone, click it to keep them.")
        self.head_view.value = head_view_html(self.axis.tokens, self.axis.padding, links, uid=self.uid, focus=self.focus, note=note)

    def _draw_map(self, layer: int) -> Heatmap:
        values = self.array[layer, self.heads].mean(axis=0)
        which = f"head {self.heads[0]}" if len(self.heads) == 1 else f"mean of heads {', '.join(map(str, self.heads))}"
        title = f"layer {layer}, {which}"
        if self.map is None:
            self.map = Heatmap(values, rows="attending token", cols="attended token", row_labels=self.axis.labels,
                               col_labels=self.axis.labels, title=title)
            self.map.figure.add_class("jf-attention-map")
        else:
            self.map.update(values, row_labels=self.axis.labels, col_labels=self.axis.labels)
            self.map.figure.title = title
        return self.map

    def _model(self) -> ModelView:
        if self.model_view is None:
            self.model_view = ModelView(self.array, on_pick=lambda layer, head: self.show(layer, head, mode="heads"))
        return self.model_view

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)


class ModelView:
    """Every layer (rows) and head (columns) of attention probabilities as a thumbnail of
    its map, labelled; clicking one calls `on_pick(layer, head)`."""

    def __init__(self, array: Any, *, on_pick: Any, size: int = 64) -> None:
        import ipywidgets as w

        layers, heads = array.shape[:2]
        uid = f"jf-mv-{uuid.uuid4().hex[:10]}"
        rules = [f".{uid} .jf-mv-thumb {{aspect-ratio:1/1;height:auto !important;min-height:0;padding:0;margin:0;"
                 "background-size:100% 100%;background-repeat:no-repeat;image-rendering:pixelated;border:1px solid #d0d0d0}",
                 f".{uid} .jf-mv-thumb.jf-mv-current {{outline:3px solid #1f3b73;outline-offset:1px}}",
                 f".{uid} .jf-mv-label {{font-size:11px;color:#444;text-align:center;align-self:center}}"]
        self.thumbs: dict[tuple[int, int], Any] = {}
        cells: list[Any] = [w.HTML("")]
        cells += [self._label(f"head {h}", head_colour(h)) for h in range(heads)]
        for layer in range(layers):
            cells.append(self._label(f"layer {layer}"))
            for head in range(heads):
                png = base64.b64encode(thumbnail_png(array[layer, head], head_colour(head), size)).decode("ascii")
                rules.append(f".{uid} .jf-mv-{layer}-{head} {{background-image:url(data:image/png;base64,{png})}}")
                thumb = w.Button(description="", tooltip=f"layer {layer}, head {head}: open in the head view",
                                 layout=w.Layout(width="100%", height="auto"))
                thumb.style.button_color = "#ffffff"
                thumb.add_class("jf-mv-thumb")
                thumb.add_class(f"jf-mv-{layer}-{head}")
                thumb.on_click(lambda _b, layer=layer, head=head: on_pick(layer, head))
                self.thumbs[layer, head] = thumb
                cells.append(thumb)
        self.grid = w.GridBox(cells, layout=w.Layout(grid_template_columns=f"max-content repeat({heads}, minmax(36px, 84px))",
                                                     grid_gap="4px", overflow="auto"))
        self.grid.add_class("jf-model-view-grid")
        style = w.HTML(f"<style>{''.join(rules)}</style>", layout=w.Layout(display="none"))
        hint = w.HTML("<span class='jf-note'>every layer and head (darker: more weight); click one to open it in the head view</span>")
        self.widget = w.VBox([style, hint, self.grid])
        self.widget.add_class("jf-model-view")
        self.widget.add_class(uid)

    @staticmethod
    def _label(text: str, colour: str = "#444444") -> Any:
        import ipywidgets as w

        label = w.HTML(f"<span style='color:{colour}'>{_esc(text)}</span>")
        label.add_class("jf-mv-label")
        return label

    def mark(self, layer: int, heads: Sequence[int]) -> None:
        """Outline the thumbnails of the layer and heads chosen."""
        for (lay, head), thumb in self.thumbs.items():
            (thumb.add_class if lay == layer and head in heads else thumb.remove_class)("jf-mv-current")
