"""What a failing test reports: diagnostics sections a fixture attaches to
the test (shown only when the test fails, by conftest's
pytest_runtest_makereport), and the teardown of server fixtures that fails
the test with what their servers recorded."""

import pytest


def add_diag(request, title, fn):
    """Attach fn() (called only if the test fails) as a report section."""
    diag = getattr(request.node, "_wharf_diag", None)
    if diag is None:
        diag = request.node._wharf_diag = []
    diag.append((title, fn))


def diagnostics_sections(item, when):
    """[(title, text)] of the diagnostics attached to item, for a failed
    report of phase `when`."""
    sections = []
    for title, fn in getattr(item, "_wharf_diag", []):
        try:
            text = fn()
        except Exception as e:  # diagnostics must never hide the failure
            text = "(diagnostics failed: %r)" % e
        sections.append(("%s [%s]" % (title, when), text))
    return sections


def serve_for_test(new, errors_of, what):
    """A server fixture's body: yields a factory (new(index, *args) makes a
    running server), stops every server made at teardown, then fails the
    test with what the servers recorded in errors_of(server)."""
    made = []

    def make(*args, **kw):
        s = new(len(made), *args, **kw)
        made.append(s)
        return s

    yield make
    for s in made:
        s.stop()
    errors = [e for s in made for e in errors_of(s)]
    if errors:
        pytest.fail("%s: %s" % (what, errors))
