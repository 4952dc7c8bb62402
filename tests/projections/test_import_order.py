"""The runner and observability do not import each other (issue 8): the runner imports
the metrics module when asked to serve metrics; observability names what it reads of a
runner (``Metered``) instead of importing it, even for type checking."""

from __future__ import annotations

import grimp


def test_observability_does_not_import_the_runner() -> None:
    graph = grimp.build_graph("eventfold")
    chain = graph.find_shortest_chain(
        importer="eventfold.projections.observability",
        imported="eventfold.projections.runner",
    )
    assert chain is None, f"an import circle: {' -> '.join(chain or ())}"
