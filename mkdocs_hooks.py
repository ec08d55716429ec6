"""MkDocs hooks for charrnn's site (mkdocs.yml: hooks).

The commands' help keeps some paragraphs as written (Click's "\\b" marker): a line ending in ":"
("Typical use:", "Examples:") over lines indented by two spaces. mkdocs-click passes them through
as prose, so Markdown would run their lines together into one; this makes each a text block, as
`--help` shows it. Docstrings rendered by mkdocstrings are plain text written the same way (an
indented list under a line ending in ":"), and keep their layout too. Fenced blocks and Markdown
list items are left alone.
"""

import re

from markdown import Extension
from markdown.preprocessors import Preprocessor

_LIST_ITEM = re.compile(r"([-*+]|\d+[.)])\s")


class _KeepHelpLists(Preprocessor):
    def run(self, lines):
        out, i, fenced = [], 0, False
        while i < len(lines):
            line = lines[i]
            if line.lstrip().startswith(("```", "~~~")):
                fenced = not fenced
            starts = (not fenced and line.rstrip().endswith(":") and not line.startswith(" ")
                      and not _LIST_ITEM.match(line)
                      and (i == 0 or not lines[i - 1].strip())
                      and i + 1 < len(lines) and lines[i + 1].startswith("  "))
            if not starts:
                out.append(line)
                i += 1
                continue
            j = i + 1
            while j < len(lines) and lines[j].strip():
                j += 1
            out += [line, "", "```text", *lines[i + 1:j], "```", ""]
            i = j
        return out


class _KeepHelpListsExtension(Extension):
    def extendMarkdown(self, md):
        md.preprocessors.register(_KeepHelpLists(md), "charrnn_help_lists", 140)  # after mkdocs-click


def on_config(config):
    config.markdown_extensions.append(_KeepHelpListsExtension())
    return config
