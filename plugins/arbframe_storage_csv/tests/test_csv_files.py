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
