"""CSV specifics: headers, appends after restart, torn last lines, bad rows reported by line number."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

from arbframe_storage_csv.storage import CsvStorage

from arbframe import FxRate, columns, new_id, read_csv_table
from arbframe.testing.storage_kit import T0, closed, sample_position


def fx(rate: str) -> FxRate:
    from decimal import Decimal

    return FxRate(id=new_id(), ts=T0, rate=Decimal(rate), source="static")


def test_header_once_and_append_after_restart(tmp_path: Path) -> None:
    s = CsvStorage({"data_dir": str(tmp_path)})
    s.log_fx_rate(fx("1350"))
    s.close()
    s = CsvStorage({"data_dir": str(tmp_path)})
    s.log_fx_rate(fx("1351"))
    s.close()
    lines = (tmp_path / "fx_rates.csv").read_text().splitlines()
    assert lines[0] == ",".join(columns(FxRate))
    assert len(lines) == 3
    assert [r.rate for _, r in read_csv_table(tmp_path / "fx_rates.csv", FxRate)] == [1350, 1351]


def test_torn_last_line_is_cut_aside_and_earlier_rows_survive(tmp_path: Path, caplog) -> None:
    s = CsvStorage({"data_dir": str(tmp_path)})
    first, second = fx("1350.5"), fx("1351.25")
    s.log_fx_rate(first)
    s.log_fx_rate(second)
    s.close()
    path = tmp_path / "fx_rates.csv"
    data = path.read_bytes()
    path.write_bytes(data[:-15])  # a crash in the middle of the last row
    reported: list[str] = []
    rows = [r for _, r in read_csv_table(path, FxRate, on_error=reported.append)]
    assert rows == [first]
    assert reported == [f"{path}:3: torn last line (interrupted write) skipped"]
    with caplog.at_level(logging.WARNING):
        s = CsvStorage({"data_dir": str(tmp_path)})
        third = fx("1352")
        s.log_fx_rate(third)
        s.close()
    assert "torn last line" in caplog.text
    assert [r for _, r in read_csv_table(path, FxRate)] == [first, third]
    assert (tmp_path / "fx_rates.csv.torn").exists()


def test_bad_rows_are_reported_with_line_numbers_and_skipped(tmp_path: Path) -> None:
    s = CsvStorage({"data_dir": str(tmp_path)})
    good = fx("1350")
    s.log_fx_rate(good)
    s.close()
    path = tmp_path / "fx_rates.csv"
    with path.open("a") as handle:
        handle.write("x1,not-a-date,1350,static,USD,KRW,false,\n")
        handle.write("x2,2026-01-01T00:00:00+00:00,abc,static,USD,KRW,false,\n")
        handle.write("x3,2026-01-01T00:00:00,1350,static,USD,KRW,false,\n")
        handle.write("x4,too,few\n")
    reported: list[str] = []
    rows = [r for _, r in read_csv_table(path, FxRate, on_error=reported.append)]
    assert rows == [good]
    assert [m.split(": ", 1)[0] for m in reported] == [f"{path}:{n}" for n in (3, 4, 5, 6)]
    assert "column 'rate': 'abc'" in reported[1]
    assert "no time zone" in reported[2]
    assert "expected 8 fields, found 3" in reported[3]


def test_load_positions_last_row_wins_across_restart(tmp_path: Path) -> None:
    s = CsvStorage({"data_dir": str(tmp_path)})
    a, b = sample_position(), sample_position()
    s.log_position_open(a)
    s.log_position_open(b)
    s.log_position_close(closed(a))
    s.close()
    s = CsvStorage({"data_dir": str(tmp_path)})
    assert s.load_positions() == [b]
    s.log_position_close(closed(replace(b)))
    assert s.load_positions() == []
    s.close()


def test_defaulted_empty_text_fields_round_trip(tmp_path: Path) -> None:
    from decimal import Decimal

    from arbframe import Order, OrderType, Side

    order = Order(id=new_id(), ts=T0, exchange="upbit", symbol="BTC", side=Side.BUY,
                  order_type=OrderType.MARKET, qty=Decimal("0.5"))
    s = CsvStorage({"data_dir": str(tmp_path)})
    s.log_order(order)
    s.close()
    assert [r for _, r in read_csv_table(tmp_path / "orders.csv", Order)] == [order]


def test_file_of_an_older_version_gets_the_new_column_once(tmp_path: Path, caplog) -> None:
    """A fx_rates.csv written before ``instance_id`` existed is upgraded in place: old rows read back with the
    default, new rows carry the column, and a second open changes nothing."""
    old_header = [c for c in columns(FxRate) if c != "instance_id"]
    path = tmp_path / "fx_rates.csv"
    path.write_text(",".join(old_header) + "\nold1,2026-01-01T00:00:00+00:00,1350,static,USD,KRW,false\n")
    caplog.set_level(logging.WARNING)
    s = CsvStorage({"data_dir": str(tmp_path)})
    s.log_fx_rate(replace(fx("1351"), instance_id="bot-a"))
    s.close()
    assert any("added column(s) instance_id" in r.getMessage() for r in caplog.records)
    lines = path.read_text().splitlines()
    assert lines[0] == ",".join(columns(FxRate)) and len(lines) == 3
    rows = [r for _, r in read_csv_table(path, FxRate)]
    assert (rows[0].id, rows[0].instance_id) == ("old1", "")
    assert rows[1].instance_id == "bot-a"
    caplog.clear()
    CsvStorage({"data_dir": str(tmp_path)}).close()
    s = CsvStorage({"data_dir": str(tmp_path)})
    s.log_fx_rate(fx("1352"))
    s.close()
    assert not any("added column" in r.getMessage() for r in caplog.records)
    assert len(path.read_text().splitlines()) == 4


def test_file_with_unknown_columns_is_refused(tmp_path: Path) -> None:
    import pytest

    path = tmp_path / "fx_rates.csv"
    path.write_text(",".join([*columns(FxRate), "surprise"]) + "\n")
    s = CsvStorage({"data_dir": str(tmp_path)})
    s.log_fx_rate(fx("1"))
    with pytest.raises(RuntimeError, match="move the file aside"):
        s.flush()


def test_a_positions_file_of_an_older_version_gets_the_new_columns(tmp_path: Path) -> None:
    """Columns added at the end of a record (here the accounting columns of positions) upgrade an existing file:
    its rows keep their values and read back with NULL in the new columns; new rows carry them."""
    from decimal import Decimal

    from arbframe import Position, to_row

    old_columns = list(columns(Position))[:-3]
    assert old_columns[-1] == "instance_id"
    position = sample_position()
    path = tmp_path / "positions.csv"
    path.write_text(",".join(old_columns) + "\n" + ",".join(to_row(position)[:-3]) + "\n", encoding="utf-8")
    s = CsvStorage({"data_dir": str(tmp_path)})
    done = replace(closed(position), balance_changes="upbit:BTC=-1 upbit:KRW=100", coin_residue=Decimal("0.001"))
    s.log_position_close(done)
    s.close()
    assert path.read_text(encoding="utf-8").splitlines()[0] == ",".join(columns(Position))
    rows = [p for _, p in read_csv_table(path, Position)]
    assert rows[0] == position and rows[0].balance_changes is None
    assert rows[1] == done
    assert CsvStorage({"data_dir": str(tmp_path)}).load_closed_positions() == [done]


def test_lines_backwards_across_block_boundaries_without_the_torn_tail(tmp_path: Path) -> None:
    from arbframe_storage_csv.storage import _lines_backwards

    path = tmp_path / "t.csv"
    rows = [f"row{i},{'x' * (i % 7)},ü" for i in range(40)]
    path.write_bytes(("a,b,c\n" + "\n".join(rows) + "\nrow40,torn").encode("utf-8"))
    for block in (1, 2, 5, 7, 64, 1 << 16):
        assert list(_lines_backwards(path, block)) == rows[::-1], block
    path.write_bytes(b"a,b,c\n")
    assert list(_lines_backwards(path, 3)) == []


def test_last_fx_rate_skips_a_bad_row_and_a_torn_line(tmp_path: Path, caplog) -> None:
    from datetime import timedelta
    from decimal import Decimal

    s = CsvStorage({"data_dir": str(tmp_path)})
    good = replace(fx("1350"), ts=T0 + timedelta(seconds=1))
    s.log_fx_rate(fx("1349"))
    s.log_fx_rate(good)
    s.close()
    with (tmp_path / "fx_rates.csv").open("a", encoding="utf-8") as handle:
        handle.write("bad,row,with,too,few\n")
        handle.write("torn-without-newline")
    with caplog.at_level(logging.WARNING, logger="arbframe.storage.csv"):
        again = CsvStorage({"data_dir": str(tmp_path)})
        assert again.load_last_fx_rate() == good
        assert again.load_last_fx_rate().rate == Decimal("1350")
        assert again.load_last_spreads(["BTC"]) == []  # no spreads file at all
    assert "a row near the end skipped" in caplog.text
    again.close()


def test_last_spreads_scan_stops_after_rows_that_change_nothing(tmp_path: Path, monkeypatch) -> None:
    """The backwards scan ends TAIL_SLACK_ROWS rows after the last row that changed the answer: a pair last seen
    further back is not found (documented); one within reach is, even out of time order."""
    from datetime import timedelta

    import arbframe_storage_csv.storage as module

    from arbframe import Direction
    from arbframe.testing.storage_kit import sample_records

    monkeypatch.setattr(module, "TAIL_SLACK_ROWS", 3)
    base = sample_records()["spreads"][0]
    s = CsvStorage({"data_dir": str(tmp_path)})
    far = replace(base, id=new_id(), symbol="XRP", ts=T0)
    eth = [replace(base, id=new_id(), symbol="ETH", ts=T0 + timedelta(seconds=i)) for i in range(1, 6)]
    late = replace(base, id=new_id(), direction=Direction.REVERSE, ts=T0 + timedelta(seconds=30))
    older_written_last = replace(base, id=new_id(), ts=T0 + timedelta(seconds=10))
    newer = replace(base, id=new_id(), ts=T0 + timedelta(seconds=20))
    for spread in (far, *eth, late, newer, older_written_last):
        s.log_spread(spread)
    found = {(sp.symbol, sp.direction.value): sp for sp in s.load_last_spreads(["BTC", "ETH", "XRP"])}
    assert found[("BTC", "kimchi")] == newer and found[("BTC", "reverse")] == late
    assert found[("ETH", "kimchi")] == eth[-1]
    assert ("XRP", "kimchi") not in found  # three older ETH rows that changed nothing end the scan first
    s.close()
