"""BokehJS in the notebook page, and the final picture of a view.

``jupyter_bokeh``'s widget draws with the page's ``window.Bokeh``, which nothing loads by
itself. ``load_bundle()`` is a display bundle whose script defines BokehJS (of the
kernel's bokeh version, inline: no network needed) unless the page already has it. A view
first shows this bundle and then replaces it, in the same output, with the widget (see
``widgets._LiveView``), so the page has BokehJS before the widget view is made and the
1.3 MB script never stays in the saved notebook.

``final_html()`` is what a view leaves when its session ends: a static picture (inline
HTML and SVG, what a saved notebook shows without a kernel, in nbconvert or on GitHub)
plus a script that, in a page with BokehJS, draws the final state of the charts as Bokeh
canvases in its place. The bundle has no widget mime type, so a reopened notebook never
asks for a widget model that no longer exists.
"""
import functools
import json
import uuid

LOAD_MIME = "application/vnd.bokehjs_load.v0+json"


@functools.lru_cache(maxsize=1)
def _load_script():
    import bokeh
    from bokeh.resources import INLINE
    version = json.dumps(bokeh.__version__)
    # bokeh.min.js registers itself as window.Bokeh (and Bokeh[version]); skip it when the
    # page has this version already. It reads its root from ``this``.
    return (f"if (typeof window.Bokeh === 'undefined' || !window.Bokeh[{version}]) {{\n"
            f"(function() {{\n{INLINE.js_raw[0]}\n}}).call(window);\n}}")


def load_bundle():
    """A display bundle that loads BokehJS into the page (rendered by ``jupyter_bokeh``'s
    renderer of trusted outputs; it shows nothing)."""
    return {LOAD_MIME: _load_script(), "text/plain": ""}


def _embed_script(figures, container_id):
    from bokeh.document import Document
    from bokeh.embed.util import standalone_docs_json_and_render_items
    for figure in figures:
        if figure.document is None:
            Document().add_root(figure)
    docs_json, render_items = standalone_docs_json_and_render_items(
        list(figures), suppress_callback_warning=True)
    items = [item.to_json() for item in render_items]
    payload = json.dumps({"docs": docs_json, "items": items}).replace("</", "<\\/")
    # Only with BokehJS in the page (a live session): replace the static charts by canvases.
    return (f"<script>(function() {{\n"
            f"  var B = window.Bokeh;\n"
            f"  var root = document.getElementById({json.dumps(container_id)});\n"
            f"  if (!B || !B.embed || !root) return;\n"
            f"  var data = {payload};\n"
            f"  root.querySelector('.rain-final-static').style.display = 'none';\n"
            f"  root.querySelector('.rain-final-live').style.display = '';\n"
            f"  B.embed.embed_items(data.docs, data.items);\n"
            f"}})();</script>"), items


def final_html(static_html, live_parts):
    """``static_html`` for pages without BokehJS; ``live_parts``: HTML strings and Bokeh
    figures, in order, shown instead when BokehJS is there."""
    container = f"rain-final-{uuid.uuid4().hex}"
    figures = [part for part in live_parts if not isinstance(part, str)]
    if not figures:
        return f"<div id='{container}'>{static_html}</div>"
    script, items = _embed_script(figures, container)
    charts = iter(items)
    live = []
    for part in live_parts:
        if isinstance(part, str):
            live.append(part)
        else:
            (element_id,) = next(charts)["roots"].values()
            live.append(f"<div id='{element_id}' style='width:100%'></div>")
    return (f"<div id='{container}' class='rain-final'>"
            f"<div class='rain-final-static'>{static_html}</div>"
            f"<div class='rain-final-live' style='display:none'>{''.join(live)}</div>"
            f"{script}</div>")
