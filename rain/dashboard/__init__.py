"""The dashboard: a run model folded from server events (``model``), Bokeh charts built
from it (``charts``), their HTTP pages and deltas (``web``), post-mortem serving and the
static report (``postmortem``)."""
