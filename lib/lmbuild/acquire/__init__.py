"""The acquire stage's library: read sources of many kinds into document shards.

`readers` turns each source kind into raw records (`html` extracts the main text of the HTML
pages of WARC files), `demo` provides the built-in demo corpus from text that installed packages
ship, `records` validates raw records (good ones become documents, bad ones go to quarantine with
a reason) and `run` plans the per-file tasks and writes shards.
"""
