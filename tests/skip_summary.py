"""A pytest plugin: at the end of a run, list the skipped tests grouped by reason.

pytest's own line ("3 skipped") hides which tests did not run and why; a run without
root, npm or a browser skips whole areas, and that must be visible at a glance.
"""
import collections


def skip_reason(report):
    """The reason a skipped report gives (without pytest's ``Skipped: `` prefix)."""
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        reason = str(longrepr[2])
    else:
        reason = str(longrepr or "no reason given")
    return reason.removeprefix("Skipped: ")


def pytest_terminal_summary(terminalreporter):
    skipped = terminalreporter.stats.get("skipped", [])
    if not skipped:
        return
    by_reason = collections.defaultdict(list)
    for report in skipped:
        by_reason[skip_reason(report)].append(report.nodeid)
    terminalreporter.section(f"{len(skipped)} tests SKIPPED, by reason", sep="!",
                             yellow=True, bold=True)
    for reason, nodeids in sorted(by_reason.items(), key=lambda item: -len(item[1])):
        terminalreporter.write_line(f"{len(nodeids)} skipped: {reason}", yellow=True,
                                    bold=True)
        for nodeid in sorted(nodeids):
            terminalreporter.write_line(f"    {nodeid}")
