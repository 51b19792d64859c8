"""``sam2-jax serve``: the interactive demo in a browser (``app``: the Flask app and the JSON API; ``sessions``: one
model, many sessions, one device queue; ``client``: a standard-library client of the API and the load run;
``static/``: the page)."""
