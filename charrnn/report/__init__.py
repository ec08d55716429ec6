"""Pictures of runs: a report of any runs as one self-contained web page, and each figure alone as
an image file (`charrnn report`, `charrnn plot`).

Everything is drawn from files a run already has: its metrics.jsonl (the curves) and its
checkpoint (settings, and what the model does on its own validation data). Nothing here needs a
server or the network, and nothing prints.

    runs      reading a run directory (or a checkpoint file) as it is, even while it trains
    views     what each model family shows, computed from its checkpoint and validation data
    figures   the figures, drawn with matplotlib (the optional extra `charrnn[plot]`)
    page      the HTML page: inline SVG figures, tables, and the little script the page needs

matplotlib is imported only by `figures` (and so `page`), and only when a figure is drawn;
without it they raise a CharrnnError naming the extra to install.
"""
