"""The browser tests' skip rule: skip, saying why, only when REQUIRE_BROWSER is unset; fail under it (CI)."""

import pytest
import space_support


def test_a_missing_browser_skips_with_the_reason(monkeypatch):
    monkeypatch.delenv("REQUIRE_BROWSER", raising=False)
    monkeypatch.setattr(space_support.shutil, "which", lambda name: None)
    with pytest.raises(pytest.skip.Exception, match="no Chromium on PATH|playwright is not installed"):
        space_support.browser_or_skip()


def test_a_missing_browser_fails_when_ci_requires_it(monkeypatch):
    monkeypatch.setenv("REQUIRE_BROWSER", "1")
    monkeypatch.setattr(space_support.shutil, "which", lambda name: None)
    with pytest.raises(pytest.fail.Exception, match="REQUIRE_BROWSER=1"):
        space_support.browser_or_skip()
