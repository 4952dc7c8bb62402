"""The repository's folders that install as subpackages of ``eventfold``, never on their own."""

BARE_PACKAGE_NAMES = frozenset(
    {"eventstore", "upcasters", "snapshots", "aggregates", "projections", "processes", "messaging"}
)
