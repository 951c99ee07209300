"""The synthetic-export generator: reproducible, realistic, valid row by row, and
written the way a municipal system writes its exports."""

from __future__ import annotations

import stat
from datetime import date, timedelta
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import pycountry
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rrnet_cli import code as rcode
from rrnet_cli import ingest, schema
from rrnet_cli.errors import UsageError
from rrnet_cli.sample import AS_OF, NOTE_COLUMN, generate_register, write_sample

ROWS = 20_000
SAMPLE_DATA = Path(__file__).resolve().parent.parent / "sample_data"
SAMPLE_SEED = 20130708
#: The committed samples and how sample_data/README.md says to regenerate them.
COMMITTED = (
    ("register_en_utf8.csv", "en", "utf-8"),
    ("register_ja_cp932.csv", "ja", "cp932"),
    ("register_ja_utf8bom.csv", "ja", "utf-8-sig"),
    ("register.parquet", "en", "utf-8"),
)

EN_HEADERS = [c.name for c in schema.COLUMNS] + ["note"]
JA_HEADERS = [c.aliases[0] for c in schema.COLUMNS] + ["備考"]
NATIONALITY_JA = {
    "CHN": "中国",
    "VNM": "ベトナム",
    "KOR": "韓国",
    "PHL": "フィリピン",
    "BRA": "ブラジル",
    "NPL": "ネパール",
    "IDN": "インドネシア",
    "TWN": "台湾",
    "USA": "米国",
    "PER": "ペルー",
    "THA": "タイ",
    "MMR": "ミャンマー",
}
LANGUAGE_OF = {
    "VNM": "vi",
    "CHN": "zh-Hans",
    "TWN": "zh-Hant",
    "KOR": "ko",
    "BRA": "pt",
    "PER": "es",
    "PHL": "tl",
    "NPL": "ne",
    "IDN": "id",
}
NO_EXPIRY = ("永住者", "特別永住者")
CARD = r"^[A-Z]{2}[0-9]{8}[A-Z]{2}$"


@pytest.fixture(scope="module")
def register() -> pl.DataFrame:
    """20,000 residents with English headers."""
    return generate_register(ROWS, seed=42)


@pytest.fixture(scope="module")
def register_ja() -> pl.DataFrame:
    """The same 20,000 residents with Japanese headers."""
    return generate_register(ROWS, seed=42, headers="ja")


def parse_dates(column: pl.Expr) -> pl.Expr:
    """The three date formats an export may use."""
    return pl.coalesce(
        [column.str.to_date(f, strict=False) for f in ("%Y-%m-%d", "%Y/%m/%d", "%Y%m%d")]
    )


def share(frame: pl.DataFrame, column: str) -> float:
    return frame[column].is_not_null().mean()  # type: ignore[return-value]


# ---------------------------------------------------------------------------
# Reproducibility


@pytest.mark.parametrize(
    ("name", "encoding"),
    [("a.csv", "utf-8"), ("a.csv", "cp932"), ("a.csv", "utf-8-sig"), ("a.parquet", "utf-8")],
)
def test_same_seed_gives_the_same_bytes(tmp_path: Path, name: str, encoding: str) -> None:
    first, second, other = tmp_path / "1", tmp_path / "2", tmp_path / "3"
    for folder in (first, second, other):
        folder.mkdir()
    write_sample(first / name, 500, seed=7, headers="ja", encoding=encoding)
    write_sample(second / name, 500, seed=7, headers="ja", encoding=encoding)
    write_sample(other / name, 500, seed=8, headers="ja", encoding=encoding)
    assert (first / name).read_bytes() == (second / name).read_bytes()
    assert (first / name).read_bytes() != (other / name).read_bytes()


def test_no_seed_draws_fresh_people() -> None:
    first, second = generate_register(200), generate_register(200)
    assert first["name"].to_list() != second["name"].to_list()


def test_both_header_styles_describe_the_same_people(
    register: pl.DataFrame, register_ja: pl.DataFrame
) -> None:
    ja = register_ja.rename(dict(zip(JA_HEADERS, EN_HEADERS, strict=True)))
    same = ["resident_id", "household_id", "name", "birth_date", "address", "resident_code"]
    assert ja.select(same).equals(register.select(same))
    sexes = set(zip(register["sex"], ja["sex"], strict=True))
    assert sexes == {("M", "男"), ("F", "女"), ("1", "1"), ("2", "2")}
    pairs = dict(zip(register["nationality"], ja["nationality"], strict=True))
    for iso, name in NATIONALITY_JA.items():
        assert pairs[iso] == name


# ---------------------------------------------------------------------------
# Headers


def test_english_headers_are_the_canonical_names(register: pl.DataFrame) -> None:
    assert register.columns == EN_HEADERS
    assert register.schema == {c: pl.String for c in EN_HEADERS}


def test_japanese_headers_are_each_columns_first_alias(register_ja: pl.DataFrame) -> None:
    assert register_ja.columns == JA_HEADERS
    resolved = schema.resolve_headers(register_ja.columns)
    assert sorted(resolved.values()) == sorted(c.name for c in schema.COLUMNS)
    assert NOTE_COLUMN["ja"] not in resolved  # carried through, not recognised


# ---------------------------------------------------------------------------
# Every row passes the register's rules


def test_resident_and_household_ids_are_zero_padded(register: pl.DataFrame) -> None:
    assert register["resident_id"].str.contains(r"^[0-9]{9}$").all()
    assert register["resident_id"].n_unique() == ROWS
    assert register["resident_id"].str.starts_with("0").all()
    assert register["household_id"].str.contains(r"^[0-9]{9}$").all()


def test_households_share_home_and_usually_a_family_name(register: pl.DataFrame) -> None:
    households = register.group_by("household_id", maintain_order=True).agg(
        pl.len().alias("size"),
        pl.col("postal_code").n_unique().alias("postal_codes"),
        pl.col("address").n_unique().alias("addresses"),
        pl.col("nationality").first(),
        pl.col("name").str.to_lowercase().str.split(" ").list.first().alias("surnames"),
    )
    assert households["size"].min() == 1
    assert households["size"].max() == 5
    assert (households["postal_codes"] == 1).all()
    assert (households["addresses"] == 1).all()
    # Children carry the head's family name (Burmese names have none).
    families = households.filter(
        (pl.col("size") >= 3) & ~pl.col("nationality").is_in(["MMR", "IDN"])
    )
    same = families["surnames"].list.get(0) == families["surnames"].list.get(2)
    assert same.mean() > 0.9


def test_addresses_and_postal_codes_look_real(register: pl.DataFrame) -> None:
    assert register["postal_code"].str.contains(r"^[0-9]{3}-[0-9]{4}$").all()
    assert register["address"].str.starts_with("愛知県さくら市").all()
    assert register["address"].str.contains("丁目").any()
    assert register["address"].str.contains("号室").any()


def test_names_are_multinational_with_diacritics(register: pl.DataFrame) -> None:
    names = register["name"]
    assert not names.str.contains(r"^\s|\s$|\s\s").any()
    for text in ("NGUYỄN", "THỊ", "Ã", "Ú"):
        assert names.str.to_uppercase().str.contains(text, literal=True).any(), text
    assert (names.str.contains(r"^[^a-z]+$")).mean() > 0.5  # mostly in capitals


def test_ascii_names_have_no_diacritics(register: pl.DataFrame) -> None:
    plain = generate_register(ROWS, seed=42, ascii_names=True)
    assert plain["name"].str.contains(r"^[A-Za-z' .\-]+$").all()
    assert plain["name"].str.to_uppercase().str.contains("NGUYEN THI", literal=True).any()
    assert plain.drop("name").equals(register.drop("name"))


def test_kanji_names_and_aliases(register: pl.DataFrame) -> None:
    kanji = register.filter(pl.col("name_kanji").is_not_null())
    assert set(kanji["nationality"]) <= {"CHN", "KOR", "TWN"}
    assert kanji.height > 0
    aliased = register.filter(pl.col("alias").is_not_null())
    assert aliased.height > 0
    assert set(aliased["foreign_resident_category"]) == {"特別永住者"}
    assert aliased["alias"].str.contains(r"^[\p{Han}\p{Hiragana}\p{Katakana}ー\u3000]+$").all()
    assert aliased["alias_kana"].str.contains(r"^[\p{Katakana}ー\u3000]+$").all()
    assert (register["alias"].is_null() == register["alias_kana"].is_null()).all()


def test_birth_dates_are_past_dates_in_three_formats(register: pl.DataFrame) -> None:
    births = register.select(parse_dates(pl.col("birth_date")).alias("d"))["d"]
    assert births.null_count() == 0
    assert births.min() >= date(1930, 1, 1)  # type: ignore[operator]
    assert births.max() < AS_OF  # type: ignore[operator]
    formats = register["birth_date"].str.replace_all("[0-9]", "9").unique().to_list()
    assert sorted(formats) == ["9999-99-99", "9999/99/99", "99999999"]


def test_sex_and_nationality_as_exports_print_them(
    register: pl.DataFrame, register_ja: pl.DataFrame
) -> None:
    assert set(register["sex"]) == {"M", "F", "1", "2"}
    assert set(register_ja["性別"]) == {"男", "女", "1", "2"}
    for iso in register["nationality"].unique():
        assert pycountry.countries.get(alpha_3=iso) is not None, iso
    assert set(NATIONALITY_JA.values()) <= set(register_ja["国籍・地域"])
    # Weighted like Japan's foreign residents: China, then Viet Nam, then Korea.
    top = register["nationality"].value_counts(sort=True)["nationality"].head(3).to_list()
    assert top == ["CHN", "VNM", "KOR"]


def test_categories_and_statuses_fit_together(register: pl.DataFrame) -> None:
    categories = register["foreign_resident_category"]
    assert set(categories) <= set(schema.FOREIGN_RESIDENT_CATEGORIES)
    assert (categories == "中長期在留者").mean() > 0.85
    special = register.filter(categories == "特別永住者")
    assert (special["residence_status"] == "特別永住者").all()
    assert set(special["nationality"]) <= {"KOR", "CHN", "TWN"}
    assert (
        register.filter(pl.col("nationality") == "KOR")["residence_status"] == "特別永住者"
    ).mean() > 0.4
    long_term = register.filter(categories == "中長期在留者")
    assert long_term["residence_status"].is_not_null().all()
    assert "特別永住者" not in set(long_term["residence_status"])
    # The rare categories hold neither a status of residence nor a residence card.
    rare = register.filter(~categories.is_in(["中長期在留者", "特別永住者"]))
    assert rare.height > 0
    assert rare["residence_status"].is_null().all()
    assert rare["residence_card_number"].is_null().all()


def test_stay_expiry_only_where_the_status_expires(register: pl.DataFrame) -> None:
    expiring = register["residence_status"].is_not_null() & ~register["residence_status"].is_in(
        NO_EXPIRY
    )
    assert (register["stay_expiry"].is_not_null() == expiring).all()
    expiry = register.select(parse_dates(pl.col("stay_expiry")).alias("d"))["d"].drop_nulls()
    assert expiry.min() >= date(2026, 12, 1)  # type: ignore[operator]
    assert expiry.max() <= date(2031, 12, 31)  # type: ignore[operator]


def test_residence_card_numbers_are_well_formed_and_unique(register: pl.DataFrame) -> None:
    cards = register["residence_card_number"].drop_nulls()
    assert cards.len() > 0.99 * ROWS
    assert cards.str.contains(CARD).all()
    assert cards.n_unique() == cards.len()


def test_planned_move_outs_about_three_percent_in_the_next_60_days(
    register: pl.DataFrame,
) -> None:
    assert share(register, "planned_move_out_date") == pytest.approx(0.03, abs=0.01)
    days = register.select(parse_dates(pl.col("planned_move_out_date")).alias("d"))["d"]
    assert days.drop_nulls().min() >= AS_OF  # type: ignore[operator]
    assert days.drop_nulls().max() < AS_OF + timedelta(days=60)  # type: ignore[operator]
    assert days.null_count() == register["planned_move_out_date"].null_count()


def test_carried_over_codes_about_five_percent_valid_and_distinct(
    register: pl.DataFrame,
) -> None:
    assert share(register, "resident_code") == pytest.approx(0.05, abs=0.012)
    codes = register["resident_code"].drop_nulls()
    assert all(rcode.is_valid(c) for c in codes)
    assert codes.str.contains(r"^[0-9]{11}$").all()
    assert codes.n_unique() == codes.len()
    # Nobody moving out arrives with a code, so the demo's counts add up.
    both = register["resident_code"].is_not_null() & register["planned_move_out_date"].is_not_null()
    assert not both.any()


def test_languages_match_nationality(register: pl.DataFrame) -> None:
    assert share(register, "language") == pytest.approx(0.30, abs=0.03)
    chosen = register.filter(pl.col("language").is_not_null())
    assert set(chosen["language"]) <= set(schema.LANGUAGES)
    for nationality, category, language in (
        chosen.select("nationality", "foreign_resident_category", "language").unique().iter_rows()
    ):
        if category == "特別永住者":
            assert language == "ja"  # born and schooled in Japan
        else:
            assert language == LANGUAGE_OF.get(nationality, "en"), nationality


def test_note_column_is_mostly_empty(register: pl.DataFrame) -> None:
    assert 0 < share(register, "note") < 0.1


def test_every_row_passes_the_ingest_rules(tmp_path: Path) -> None:
    for headers, encoding in (("en", "utf-8"), ("ja", "cp932")):
        path = tmp_path / f"{headers}.csv"
        write_sample(path, 3_000, seed=3, headers=headers, encoding=encoding)
        export = ingest.read_export(path)
        _, errors = ingest.validate_register(export)
        assert errors.height == 0, errors.head(5)
        assert len(export.recognised) == len(schema.COLUMNS)


@settings(max_examples=25, deadline=None)
@given(rows=st.integers(0, 40), seed=st.integers(0, 2**32))
def test_any_size_gives_that_many_distinct_residents(rows: int, seed: int) -> None:
    frame = generate_register(rows, seed=seed)
    assert frame.height == rows
    assert frame["resident_id"].n_unique() == rows
    assert frame["residence_card_number"].drop_nulls().is_unique().all()
    if rows:
        assert frame.group_by("household_id").len()["len"].max() <= 5  # type: ignore[operator]


# ---------------------------------------------------------------------------
# Writing


def test_csv_round_trip_keeps_leading_zeros(tmp_path: Path) -> None:
    path = tmp_path / "register.csv"
    write_sample(path, 1_000, seed=11)
    back = pl.read_csv(path, infer_schema=False)
    assert back.equals(generate_register(1_000, seed=11))
    assert back["resident_id"].str.starts_with("00").all()


def test_cp932_file_has_japanese_headers_and_windows_line_endings(tmp_path: Path) -> None:
    path = tmp_path / "register.csv"
    result = write_sample(path, 500, seed=5, headers="ja", encoding="cp932")
    data = path.read_bytes()
    assert not data.startswith(b"\xef\xbb\xbf")
    text = data.decode("cp932")
    assert text.split("\r\n", 1)[0].split(",") == JA_HEADERS
    assert text.count("\r\n") == 501
    back = pl.read_csv(text.encode(), infer_schema=False)
    assert back["氏名"].str.contains(r"^[A-Za-z' .\-]+$").all()
    assert back["住所"].str.starts_with("愛知県さくら市").all()
    assert result.encoding == "cp932"


def test_utf8_sig_writes_a_byte_order_mark(tmp_path: Path) -> None:
    path = tmp_path / "register.csv"
    write_sample(path, 50, seed=5, headers="ja", encoding="utf-8-sig")
    data = path.read_bytes()
    assert data.startswith("\ufeff宛名番号,".encode())
    plain = tmp_path / "plain.csv"
    write_sample(plain, 50, seed=5, headers="ja", encoding="utf-8")
    assert plain.read_bytes() == data[3:]


def test_parquet_is_all_text(tmp_path: Path) -> None:
    path = tmp_path / "register.parquet"
    result = write_sample(path, 300, seed=2, encoding="cp932")  # encoding is ignored
    back = pl.read_parquet(path)
    assert back.schema == {c: pl.String for c in EN_HEADERS}
    assert back.equals(generate_register(300, seed=2))
    assert result.encoding == "parquet"


@pytest.mark.parametrize("name", ["register.csv", "register.parquet"])
def test_files_are_private(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    write_sample(path, 20, seed=1)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_result_counts_what_was_written(tmp_path: Path) -> None:
    path = tmp_path / "register.csv"
    result = write_sample(path, 2_000, seed=9, headers="ja", encoding="utf-8-sig")
    back = pl.read_csv(path, infer_schema=False)
    assert result.path == path
    assert result.rows == back.height == 2_000
    assert result.households == back["世帯番号"].n_unique()
    assert result.planned_move_outs == back["転出予定日"].is_not_null().sum() > 0
    assert result.carried_over_codes == back["住民票コード"].is_not_null().sum() > 0
    assert (result.encoding, result.headers) == ("utf-8-sig", "ja")


def test_zero_rows_writes_only_the_header(tmp_path: Path) -> None:
    path = tmp_path / "empty.csv"
    result = write_sample(path, 0, seed=1)
    assert path.read_text(encoding="utf-8").strip() == ",".join(EN_HEADERS)
    assert (result.rows, result.households, result.carried_over_codes) == (0, 0, 0)
    assert generate_register(0).schema == {c: pl.String for c in EN_HEADERS}


@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        ("register.xlsx", {}, ".csv or .parquet"),
        ("register", {}, ".csv or .parquet"),
        ("register.csv", {"encoding": "latin-1"}, "utf-8, utf-8-sig, cp932"),
        ("register.csv", {"encoding": "shift_jis"}, "cp932"),
        ("register.csv", {"rows": -1}, "0 or more"),
        ("register.csv", {"headers": "fr"}, "en or ja"),
    ],
)
def test_bad_requests_are_refused_and_write_nothing(
    tmp_path: Path, name: str, options: dict[str, object], message: str
) -> None:
    rows = options.pop("rows", 10)
    with pytest.raises(UsageError, match=message.replace(".", r"\.")):
        write_sample(tmp_path / name, rows, seed=1, **options)  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []


def test_missing_folder_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="does not exist"):
        write_sample(tmp_path / "nowhere" / "register.csv", 10, seed=1)


@pytest.mark.parametrize(("name", "headers", "encoding"), COMMITTED)
def test_committed_samples_are_what_the_documented_call_writes(
    tmp_path: Path, name: str, headers: str, encoding: str
) -> None:
    committed = SAMPLE_DATA / name
    fresh = tmp_path / name
    write_sample(fresh, 300, seed=SAMPLE_SEED, headers=headers, encoding=encoding)  # type: ignore[arg-type]
    if name.endswith(".parquet"):
        # A Parquet file embeds its writer's version ("created_by"), so another Polars
        # release writes other bytes for the same table: compare schema and rows.
        assert (
            pq.read_schema(fresh).remove_metadata() == pq.read_schema(committed).remove_metadata()
        )
        assert pq.read_table(fresh).equals(pq.read_table(committed))
    else:
        # A CSV's bytes are its content: encoding, BOM and line ends are what is tested.
        assert fresh.read_bytes() == committed.read_bytes()
    assert "20130708" in (SAMPLE_DATA / "README.md").read_text(encoding="utf-8")
