"""The browser player: app files (ES modules + WebGL2) shipped as package data, its server and static export.

``server`` serves the app and one stream with HTTP Range (``rerf play``); ``export``
writes the same files into a folder any Range-capable static host can serve
(``rerf export-web``). The JavaScript lives next to this file: ``index.html``,
``player.js`` (state machine, buffers), ``render/`` (WebGL2 ray marcher) and
``decoder/`` (the JS decoder of the ``.rerf`` format).
"""
