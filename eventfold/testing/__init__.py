"""Testing applications built on eventfold: the pytest plugin (``eventfold.testing.plugin``,
loaded by pytest through the ``pytest11`` entry point) and PostgreSQL for tests
(``eventfold.testing.postgres``). Aggregates have ``eventfold.scenario``; store backends the
conformance suite ``eventfold.eventstore.testing``."""
