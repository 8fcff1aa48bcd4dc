"""newsletter: write, check, render and send a daily-briefing email newsletter.

The library API, in the order data flows:
``authoring.parse.parse_text`` -> ``authoring.validate.validate`` -> ``authoring.render.render``; ``authoring.build.build_file``
runs all three for a file. ``config.load_settings`` reads the project's settings.
"""

__version__ = "0.1.0"
