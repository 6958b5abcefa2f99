"""Chart.yaml metadata, and helm lint --strict saying nothing."""

from helmchart import chart, lint


def test_metadata():
    m = chart().metadata
    for key in ("icon", "home", "sources", "keywords", "maintainers", "kubeVersion", "appVersion"):
        assert m.get(key), key
    for url in [m["icon"], m["home"], *m["sources"]]:
        assert ".example.com" in url, f"placeholder expected, got {url}"


def test_lint_is_silent():
    report = lint()
    assert report["errors"] == [], report
    assert report["messages"] == [], report
