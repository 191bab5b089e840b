"""`cowest view RUN_DIR...`: a page of what runs did, question by question (`data`: the resources read from run
directories; `serve`: the local server and the static export; `static/`: the page itself)."""
