"""Registers the `browser` marker (the real-browser widget test; opt-in, see test_browser.py)."""


def pytest_configure(config):
    config.addinivalue_line("markers", "browser: drives the widgets in JupyterLab with headless Chromium (opt-in)")
