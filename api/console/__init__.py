"""The incident console: one HTML page, one script and one stylesheet served by the API.

No build step: the files are package data under ``static/``. The page holds no data of its
own; the script calls the JSON API with the key the user pastes (kept in ``sessionStorage``,
sent as a header, never in a URL) and inserts every value as text.
"""
