"""``eventfold streams list`` and ``streams show`` on a SQLite file."""

from __future__ import annotations

from cli_support import Invoke, json_lines, one_error_line

from eventfold.cli.execution import EXIT_NOT_FOUND


def test_list_shows_every_stream_with_its_version(invoke: Invoke, seeded_url: str) -> None:
    result = invoke("--database", seeded_url, "streams", "list")
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert any("Cart-1" in line and " 3 " in line for line in lines)
    assert "Cart-2" in result.stdout and "Wishlist-9" in result.stdout


def test_list_json_is_one_object_per_stream(invoke: Invoke, seeded_url: str) -> None:
    result = invoke("--database", seeded_url, "streams", "list", "--json")
    assert result.exit_code == 0, result.stderr
    rows = json_lines(result.stdout)
    assert [(r["stream_id"], r["category"], r["version"]) for r in rows] == [
        ("Cart-1", "Cart", 3), ("Cart-2", "Cart", 1), ("Wishlist-9", "Wishlist", 1),
    ]
    assert all(r["updated_at"] for r in rows)


def test_list_filters_by_category(invoke: Invoke, seeded_url: str) -> None:
    result = invoke("--database", seeded_url, "streams", "list", "--category", "Cart", "--json")
    assert [r["stream_id"] for r in json_lines(result.stdout)] == ["Cart-1", "Cart-2"]


def test_list_with_a_limit_says_where_the_next_page_starts(
    invoke: Invoke, seeded_url: str
) -> None:
    result = invoke("--database", seeded_url, "streams", "list", "--limit", "1")
    assert result.exit_code == 0, result.stderr
    assert "Cart-1" in result.stdout and "Cart-2" not in result.stdout
    assert "--after 'Cart-1'" in result.stdout

    rest = invoke("-d", seeded_url, "streams", "list", "--after", "Cart-1", "--json")
    assert [r["stream_id"] for r in json_lines(rest.stdout)] == ["Cart-2", "Wishlist-9"]


def test_list_of_an_empty_category_says_so(invoke: Invoke, seeded_url: str) -> None:
    result = invoke("--database", seeded_url, "streams", "list", "--category", "Order")
    assert result.exit_code == 0
    assert "no streams of category 'Order'" in result.stdout
    assert invoke("-d", seeded_url, "streams", "list", "-c", "Order", "--json").stdout == ""


def test_show_prints_the_events_in_a_table(invoke: Invoke, seeded_url: str) -> None:
    result = invoke("--database", seeded_url, "streams", "show", "Cart-1")
    assert result.exit_code == 0, result.stderr
    rows = [line for line in result.stdout.splitlines() if " v1 " in line]
    assert [row.split()[:3] for row in rows] == [
        ["1", "1", "CartOpened"], ["2", "2", "ItemAdded"], ["3", "3", "ItemAdded"],
    ]
    assert '{"owner":"ann"}' in result.stdout


def test_show_json_gives_the_full_envelopes(invoke: Invoke, seeded_url: str) -> None:
    result = invoke("--database", seeded_url, "streams", "show", "Cart-1", "--json")
    assert result.exit_code == 0, result.stderr
    rows = json_lines(result.stdout)
    assert [r["stream_version"] for r in rows] == [1, 2, 3]
    assert rows[1]["event_type"] == "ItemAdded" and rows[1]["schema_version"] == 1
    assert rows[1]["data"] == {"sku": "tea", "price": "3.10"}  # decimals stay exact
    assert set(rows[0]) == {
        "event_id", "stream_id", "stream_version", "position", "transaction_id", "event_type",
        "schema_version", "recorded_at", "data", "metadata",
    }
    assert len({r["event_id"] for r in rows}) == 3


def test_show_a_version_range(invoke: Invoke, seeded_url: str) -> None:
    result = invoke("-d", seeded_url, "streams", "show", "Cart-1", "--from", "2", "--to", "2",
                    "--json")
    assert [r["data"]["sku"] for r in json_lines(result.stdout)] == ["tea"]


def test_show_an_unknown_stream_is_one_error_line(invoke: Invoke, seeded_url: str) -> None:
    result = invoke("--database", seeded_url, "streams", "show", "Cart-404")
    assert result.exit_code == EXIT_NOT_FOUND
    assert "'Cart-404' has no events" in one_error_line(result)


def test_show_rejects_a_bad_stream_id_in_one_line(invoke: Invoke, seeded_url: str) -> None:
    result = invoke("--database", seeded_url, "streams", "show", " Cart-1")
    assert result.exit_code != 0
    assert "whitespace" in one_error_line(result)
