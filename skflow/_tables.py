"""Rendering of the reports (convergence report, certificate) as short text and HTML tables."""

from html import escape

import numpy as np

__all__ = ["format_value", "html_table", "text_table"]


def format_value(value):
    """Booleans as yes/no, numbers with 4 significant digits, anything else as ``str``."""
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (float, int, np.floating, np.integer)):
        return f"{value:.4g}"
    return str(value)


def text_table(title, rows, sentences):
    """``title``, an underline, aligned ``label  value`` rows, then the sentences after a blank line."""
    width = max((len(label) for label, _ in rows), default=0)
    lines = [title, "-" * len(title)]
    lines += [f"{label.ljust(width)}  {format_value(value)}" for label, value in rows]
    sentences = [s for s in sentences if s]
    return "\n".join(lines + ([""] + sentences if sentences else []))


def html_table(title, rows, sentences):
    """The same as :func:`text_table`, for notebooks."""
    body = "".join(f"<tr><td>{escape(label)}</td><td>{escape(format_value(v))}</td></tr>" for label, v in rows)
    text = "".join(f"<p>{escape(s)}</p>" for s in sentences if s)
    return f"<div><strong>{escape(title)}</strong><table>{body}</table>{text}</div>"
