"""Web assets shipped with the package: the JavaScript decoder (``web/decoder/``)."""
