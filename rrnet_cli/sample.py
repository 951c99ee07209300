"""Synthetic register exports, for demos, tests and benchmarks.

``generate_register`` builds a frame that looks like a municipality's foreign
resident register export (the columns of ``schema``), and ``write_sample`` writes one as CSV
(UTF-8, UTF-8 with a byte-order mark, or CP932) or as Parquet. Nobody in it is
real. Among the things rrnet has to cope with, it contains:

- households of one to five people sharing a household number, a postal code,
  an address in the fictional city 愛知県さくら市 and usually a family name;
- alphabet names as on residence cards from the nationalities living in Japan,
  roughly in the proportions of the national statistics (在留外国人統計), with
  diacritics where the language has them (Nguyễn Thị Hương, Conceição, Núñez);
  names in kanji for some Chinese, Korean and Taiwanese residents, and an alias
  (通称) with its katakana reading for some special permanent residents;
- statuses of residence that fit each person's category, expiry dates only
  where a status expires, and a few of the rare categories (no residence card);
- birth dates in three formats (YYYY-MM-DD, YYYY/MM/DD, YYYYMMDD);
- about 3% of residents with a planned move-out (they must get no code), about
  5% arriving with a valid resident record code (they keep it), and an extra
  ``note`` column rrnet must carry through untouched.

Both header styles describe the same people: ``headers="en"`` prints canonical
column names, ISO 3166-1 alpha-3 nationalities and M/F; ``headers="ja"`` prints
the Japanese headers, nationality names as on residence cards and 男/女. The
same seed always gives the same file, byte for byte: dates are drawn around the
fixed ``AS_OF`` day, not around today.

>>> frame = generate_register(4, seed=7)
>>> frame.columns[:3], frame.height
(['resident_id', 'household_id', 'name'], 4)
>>> generate_register(1, seed=7, headers="ja").columns[:3]
['宛名番号', '世帯番号', '氏名']
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import date
from pathlib import Path
from typing import Any, Literal

import numpy as np
import polars as pl

from rrnet_cli import code as rcode
from rrnet_cli import schema
from rrnet_cli.errors import UsageError
from rrnet_cli.files import atomic_output, check_table_suffix

__all__ = [
    "AS_OF",
    "ENCODINGS",
    "NOTE_COLUMN",
    "SampleResult",
    "generate_register",
    "write_sample",
]

#: The day the synthetic register describes. Planned move-outs fall in the 60
#: days after it, newborns were born in the 60 days before it. Fixed rather than
#: today so that a seed always reproduces the same file.
AS_OF = date(2026, 12, 1)

#: CSV encodings ``write_sample`` writes. CP932 is Shift_JIS as Windows writes it.
ENCODINGS = ("utf-8", "utf-8-sig", "cp932")

#: The extra column no rrnet schema knows: exports carry such columns and rrnet
#: must pass them through unchanged.
NOTE_COLUMN = {"en": "note", "ja": "備考"}

HeaderStyle = Literal["en", "ja"]

_EPOCH = date(1970, 1, 1)
_DAY_AS_OF = (AS_OF - _EPOCH).days
_EARLIEST_BIRTH = (date(1930, 1, 1) - _EPOCH).days
_LATEST_BIRTH = (date(2025, 12, 31) - _EPOCH).days
_EARLIEST_EXPIRY = (date(2026, 12, 1) - _EPOCH).days
_LATEST_EXPIRY = (date(2031, 12, 31) - _EPOCH).days
_YEAR = 365.25

_HOUSEHOLD_SIZES = np.array([0.55, 0.20, 0.13, 0.08, 0.04])  # 1..5 people
_MOVE_OUT_SHARE = 0.03
_CARRIED_CODE_SHARE = 0.05
_LANGUAGE_SHARE = 0.30
_UPPERCASE_SHARE = 0.7  # most systems print residence-card names in capitals
_NOTE_SHARE = 0.03
_NUMERIC_SEX_SHARE = 0.02


def _names(text: str) -> tuple[str, ...]:
    """Split a comma-separated pool; ``Roman=漢字`` entries keep both spellings."""
    return tuple(part.strip() for part in text.split(",") if part.strip())


@dataclass(frozen=True)
class _Nationality:
    iso: str  # ISO 3166-1 alpha-3, as English-header exports print it
    name_ja: str  # as the residence card prints it
    weight: int  # thousands of residents, roughly
    language: str  # notice language offered to this nationality
    family: tuple[str, ...]
    male: tuple[str, ...]
    female: tuple[str, ...]
    # Weights over the first seven _STATUSES for the head of a household.
    statuses: tuple[int, ...]
    special_permanent: float = 0.0  # share of households that are 特別永住者
    kanji: float = 0.0  # share of households whose names are also in kanji
    single_name: float = 0.0  # share of people with no family name
    keeps_surname: bool = False  # spouses keep their own family name on marriage


# Statuses of residence (在留資格). The first seven are drawn for heads of
# household; the others come from the head's status or category.
_STATUSES = (
    "永住者",
    "技術・人文知識・国際業務",
    "技能実習",
    "特定技能",
    "留学",
    "定住者",
    "日本人の配偶者等",
    "家族滞在",
    "永住者の配偶者等",
    "特別永住者",
)
_STATUS = {name: i for i, name in enumerate(_STATUSES)}
_PERMANENT, _SPECIAL = _STATUS["永住者"], _STATUS["特別永住者"]
# Status of a spouse or child by the head's status: workers' and students'
# families hold 家族滞在; the family of a spouse of a Japanese national (who is
# not on this register) are 定住者. Half of a permanent resident's family are
# permanent residents themselves (drawn later).
_MEMBER_STATUS = np.array(
    [
        _STATUS[name]
        for name in (
            "永住者の配偶者等",  # of 永住者
            "家族滞在",  # of 技術・人文知識・国際業務
            "家族滞在",  # of 技能実習 (never drawn: trainees cannot bring family)
            "家族滞在",  # of 特定技能
            "家族滞在",  # of 留学
            "定住者",  # of 定住者
            "定住者",  # of 日本人の配偶者等
            "家族滞在",
            "永住者の配偶者等",
            "特別永住者",  # of 特別永住者
        )
    ]
)
# Age range (years) of a head of household by status.
_HEAD_AGE = np.array(
    [
        *((30, 85), (23, 55), (19, 35), (20, 45), (18, 32), (22, 70), (24, 65)),
        *((20, 60), (20, 60), (25, 95)),  # dependants never head; special permanent
    ],
    dtype=float,
)

_W = (20, 45, 8, 12, 8, 2, 5)  # Western countries: mostly engineers and teachers, spouses
_NATIONALITIES = (
    _Nationality(
        "CHN",
        "中国",
        873,
        "zh-Hans",
        _names(
            "Wang=王, Li=李, Zhang=張, Liu=劉, Chen=陳, Yang=楊, Huang=黄, Zhao=趙, Wu=呉,"
            "Zhou=周, Xu=徐, Sun=孫, Ma=馬, Zhu=朱, Hu=胡, Guo=郭, He=何, Lin=林, Gao=高, Luo=羅"
        ),
        _names(
            "Wei=偉, Qiang=強, Lei=磊, Jun=軍, Yong=勇, Jie=傑, Ming=明, Chao=超, Hao=浩,"
            "Jianguo=建国, Zhiqiang=志強, Yu=宇, Haoran=浩然, Zihao=子豪, Yuxuan=宇軒"
        ),
        _names(
            "Fang=芳, Min=敏, Jing=静, Li=麗, Xia=霞, Ling=玲, Xue=雪, Hui=慧, Mei=梅,"
            "Hong=紅, Yuxin=雨欣, Xiaohong=小紅, Jingjing=晶晶, Lina=麗娜, Xiaoyan=小燕"
        ),
        (35, 22, 5, 3, 22, 4, 5),
        special_permanent=0.005,
        kanji=0.6,
        keeps_surname=True,
    ),
    _Nationality(
        "VNM",
        "ベトナム",
        634,
        "vi",
        # Nguyễn is carried by about four Vietnamese in ten.
        _names(
            "Nguyễn, Nguyễn, Nguyễn, Nguyễn, Nguyễn, Nguyễn, Trần, Trần, Lê, Lê, Phạm, Hoàng,"
            "Huỳnh, Phan, Vũ, Võ, Đặng, Bùi, Đỗ, Hồ, Ngô, Dương, Lý"
        ),
        _names(
            "Văn Nam, Văn Hùng, Đức Anh, Minh Tuấn, Quang Huy, Văn Thành, Hữu Phước,"
            "Minh Đức, Văn Long, Công Vinh, Thanh Tùng, Hoàng Long, Văn Dũng, Quốc Bảo"
        ),
        _names(
            "Thị Hương, Thị Lan, Thị Mai, Ngọc Anh, Thị Thu Trang, Thu Hà, Thị Hoa,"
            "Thị Ngọc Ánh, Thanh Hằng, Thị Hồng Nhung, Phương Thảo, Thị Huyền, Thị Yến"
        ),
        (4, 16, 30, 25, 12, 2, 2),
        keeps_surname=True,
    ),
    _Nationality(
        "KOR",
        "韓国",
        409,
        "ko",
        _names(
            "Kim=金, Kim=金, Lee=李, Lee=李, Park=朴, Choi=崔, Jung=鄭, Kang=姜, Cho=趙,"
            "Yoon=尹, Jang=張, Lim=林, Han=韓, Shin=申, Seo=徐, Kwon=権, Hwang=黄, Song=宋,"
            "Ahn=安, Hong=洪, Ko=高, Moon=文"
        ),
        _names(
            "Minjun=敏俊, Jihoon=志勲, Hyunwoo=賢宇, Youngho=永浩, Sungmin=成敏,"
            "Donghyun=東賢, Sangwoo=相宇, Jaewon=在元, Junho=俊浩, Seungho=承浩,"
            "Taeho=泰浩, Chulsoo=哲洙, Jinwoo=鎮宇, Youngsoo=英洙, Kwangsoo=光洙"
        ),
        _names(
            "Soojin=秀珍, Eunji=恩知, Mikyung=美京, Junghee=貞姫, Hyejin=恵珍,"
            "Jiyoung=智英, Younghee=英姫, Sunhee=善姫, Minji=敏智, Hyunjoo=賢珠,"
            "Eunyoung=恩英, Sunja=順子, Okja=玉子, Myungsook=明淑"
        ),
        (35, 25, 0, 1, 20, 4, 15),
        special_permanent=0.6,
        kanji=0.6,
        keeps_surname=True,
    ),
    _Nationality(
        "PHL",
        "フィリピン",
        341,
        "tl",
        _names(
            "Santos, Reyes, Cruz, Bautista, Garcia, Mendoza, Dela Cruz, Villanueva, Ramos,"
            "Aquino, Castillo, Flores, Dela Peña, Gonzales, Fernandez, Torres"
        ),
        _names(
            "Jose, Mark Anthony, John Paul, Rodel, Jerome, Ramon, Reynaldo, Christian,"
            "Jomar, Eduardo, Noel, Arnel"
        ),
        _names(
            "Maria Cristina, Jennifer, Rowena, Marites, Angelica, Grace, Maricel, Lorna,"
            "Rosalie, Mary Joy, Analyn, Liza"
        ),
        (45, 4, 10, 10, 1, 15, 15),
    ),
    _Nationality(
        "NPL",
        "ネパール",
        233,
        "ne",
        _names(
            "Shrestha, Gurung, Tamang, Rai, Magar, Thapa, Sharma, Adhikari, Karki,"
            "Bhandari, Khadka, Poudel, Limbu, Bhattarai, Maharjan"
        ),
        _names(
            "Ram Bahadur, Bikash, Sagar, Suman, Prakash, Ramesh, Dipak, Santosh, Krishna,"
            "Nabin, Hari Prasad"
        ),
        _names("Sita, Gita, Anjali, Sabina, Puja, Sunita, Sarita, Binita, Manisha, Laxmi"),
        (5, 30, 2, 5, 45, 2, 1),
    ),
    _Nationality(
        "BRA",
        "ブラジル",
        212,
        "pt",
        # Many Brazilians in Japan are of Japanese descent (日系人).
        _names(
            "Silva, da Silva, Santos, dos Santos, Oliveira, Souza, Pereira, Lima, Gonçalves,"
            "Araújo, Conceição, Rodrigues, Ferreira, Costa, Ribeiro, Nakamura, Higa, Oshiro,"
            "Yamashita"
        ),
        _names(
            "João Paulo, José Carlos, Lucas, Gabriel, Antônio, Márcio, Luís Fernando, Sérgio,"
            "Fábio, Thiago, Paulo Henrique, Rafael"
        ),
        _names(
            "Ana Cláudia, Fernanda, Juliana, Márcia, Patrícia, Luíza, Camila, Letícia,"
            "Vitória, Mônica, Beatriz, Maria da Conceição"
        ),
        (55, 1, 0, 1, 1, 35, 7),
    ),
    _Nationality(
        "IDN",
        "インドネシア",
        199,
        "id",
        _names(
            "Saputra, Wijaya, Pratama, Siregar, Nasution, Hidayat, Kurniawan, Setiawan,"
            "Santoso, Simanjuntak, Lestari, Wibowo, Sitompul"
        ),
        _names("Budi, Agus, Rizky, Dimas, Eko, Fajar, Muhammad Rizal, Ahmad, Yusuf, Andi"),
        _names("Siti Aminah, Dewi, Ayu, Rina, Nur Aini, Indah, Sri Wahyuni, Fitri, Putri, Wulan"),
        (5, 10, 35, 35, 8, 2, 3),
        single_name=0.25,
    ),
    _Nationality(
        "MMR",
        "ミャンマー",
        134,
        "en",
        (),  # Burmese names have no family name
        _names(
            "Aung Ko Ko, Kyaw Zin Htet, Myo Min Thu, Zaw Win, Htet Naing, Thant Zin,"
            "Min Khant, Soe Moe, Naing Lin"
        ),
        _names(
            "Thida Win, Su Su Hlaing, Hnin Wai Phyo, Khin Myat Noe, Ei Ei Mon, May Thu,"
            "Nilar Aung, Yadanar Oo"
        ),
        (5, 15, 25, 30, 15, 2, 2),
        single_name=1.0,
    ),
    _Nationality(
        "TWN",
        "台湾",
        70,
        "zh-Hant",
        _names(
            "Chen=陳, Lin=林, Huang=黄, Chang=張, Lee=李, Wang=王, Wu=呉, Liu=劉, Tsai=蔡,"
            "Yang=楊, Hsu=許, Cheng=鄭, Hsieh=謝, Kuo=郭, Hung=洪"
        ),
        _names(
            "Chih-Hao=志豪, Chia-Hao=家豪, Chun-Chieh=俊傑, Chien-Hung=建宏, Wei-Lun=偉倫,"
            "Cheng-Yu=承宇, Kuan-Ting=冠廷, Yu-Hsiang=宇翔"
        ),
        _names(
            "Mei-Ling=美玲, Pei-Chun=佩君, Shu-Fen=淑芬, Ya-Wen=雅文, Chia-Hui=佳慧,"
            "I-Chun=宜君, Hsiao-Mei=小梅, Li-Hua=麗華"
        ),
        (40, 25, 0, 0, 15, 3, 15),
        special_permanent=0.02,
        kanji=0.6,
        keeps_surname=True,
    ),
    _Nationality(
        "THA",
        "タイ",
        67,
        "en",
        _names(
            "Srisuk, Saetang, Wongsawat, Chaiyaphum, Rattanakorn, Phrommin, Kongkaew,"
            "Boonmee, Sukjai, Thongdee, Jaidee, Somboon"
        ),
        _names("Somchai, Anan, Prasert, Kittisak, Nattapong, Wichai, Thanakorn, Surachai"),
        _names("Siriporn, Kanokwan, Suda, Pranee, Wanida, Nattaya, Ratana, Malee"),
        (30, 8, 20, 15, 5, 7, 15),
    ),
    _Nationality(
        "USA",
        "米国",
        66,
        "en",
        _names(
            "Smith, Johnson, Williams, Brown, Jones, Miller, Davis, Wilson, Anderson, Taylor,"
            "Martinez, O'Brien, Thompson, Garcia"
        ),
        _names("James Robert, Michael, David, John, Christopher, Daniel, Matthew, Andrew"),
        _names("Mary, Jennifer, Emily, Sarah, Jessica, Ashley, Elizabeth Ann, Renée"),
        _W,
    ),
    _Nationality(
        "LKA",
        "スリランカ",
        64,
        "en",
        _names(
            "Perera, Fernando, Silva, Jayasinghe, Bandara, Dissanayake, Wickramasinghe,"
            "Herath, Kumara, Gunawardena"
        ),
        _names("Kasun, Nuwan, Chamara, Tharindu, Lahiru, Dinesh, Sampath"),
        _names("Nadeesha, Dilini, Sanduni, Chathurika, Ishara, Madushani"),
        (8, 25, 5, 15, 40, 2, 3),
    ),
    _Nationality(
        "IND",
        "インド",
        54,
        "en",
        _names("Sharma, Patel, Singh, Kumar, Reddy, Iyer, Gupta, Nair, Das, Rao, Mehta, Joshi"),
        _names("Rahul, Amit, Arjun, Vikram, Suresh, Rajesh, Sanjay, Anil"),
        _names("Priya, Anjali, Deepa, Kavya, Lakshmi, Pooja, Neha, Sunita"),
        (15, 55, 2, 1, 10, 2, 3),
    ),
    _Nationality(
        "PER",
        "ペルー",
        48,
        "es",
        # Peruvians carry both the paternal and the maternal surname.
        _names(
            "Núñez García, Quispe Mamani, Flores Rojas, Rodríguez Pérez, Sánchez Torres,"
            "Ramírez Castillo, Higa Tamashiro, Chávez Gutiérrez, Vásquez Díaz, Mendoza Ríos,"
            "Gonzales López, Huamán Quispe"
        ),
        _names("José Luis, Juan Carlos, Jorge, Víctor Hugo, César, Luis Alberto, Martín, Raúl"),
        _names("María José, Rosa, Lucía, Ángela, Verónica, Milagros, Carmen Rosa, Sofía, Inés"),
        (60, 2, 0, 1, 1, 30, 6),
    ),
    _Nationality(
        "GBR",
        "英国",
        19,
        "en",
        _names(
            "Smith, Jones, Taylor, Brown, Evans, Wilson, Thomas, Roberts, Walker, Wright,"
            "O'Connor, Hughes"
        ),
        _names("Oliver, George, Harry, Thomas, James, William"),
        _names("Olivia, Amelia, Charlotte, Sophie, Emily, Isla"),
        _W,
    ),
    _Nationality(
        "FRA",
        "フランス",
        15,
        "en",
        _names(
            "Martin, Bernard, Dubois, Lefèvre, Moreau, Laurent, Girard, Bonnet, François,"
            "Mercier, Rousseau, Gauthier"
        ),
        _names("Jean-Pierre, François, Étienne, Jérôme, Nicolas, Julien, Sébastien, Loïc"),
        _names("Hélène, Amélie, Camille, Chloé, Léa, Céline, Noémie, Anaïs"),
        _W,
    ),
    _Nationality(
        "DEU",
        "ドイツ",
        8,
        "en",
        _names("Müller, Schmidt, Schneider, Fischer, Weber, Schäfer, Groß, Köhler, Wagner"),
        _names("Jürgen, Jörg, Lukas, Maximilian, Stefan, Tobias"),
        _names("Anna, Käthe, Lena, Sophie, Jutta, Ursula"),
        _W,
    ),
    _Nationality(
        "DNK",
        "デンマーク",
        1,
        "en",
        _names("Jørgensen, Sørensen, Nielsen, Hansen, Møller, Østergaard"),
        _names("Søren, Mads, Anders, Rasmus"),
        _names("Freja, Ida, Signe, Mette"),
        _W,
    ),
)

# Aliases (通称) of special permanent residents: Japanese-style names in kanji
# with their reading in katakana.
_ALIAS_FAMILY = _names(
    "金田=カネダ, 新井=アライ, 松本=マツモト, 金本=カネモト, 岩本=イワモト, 山本=ヤマモト,"
    "平山=ヒラヤマ, 木村=キムラ, 安田=ヤスダ, 大山=オオヤマ, 青木=アオキ, 宮本=ミヤモト,"
    "金子=カネコ, 西原=ニシハラ, 朴山=ボクヤマ"
)
_ALIAS_MALE = _names(
    "太郎=タロウ, 一郎=イチロウ, 正男=マサオ, 秀雄=ヒデオ, 健一=ケンイチ, 誠=マコト,"
    "英樹=ヒデキ, 光男=ミツオ, 和夫=カズオ, 大輔=ダイスケ"
)
_ALIAS_FEMALE = _names(
    "英子=ヒデコ, 花子=ハナコ, 和子=カズコ, 光子=ミツコ, 明美=アケミ, 由美=ユミ,"
    "順子=ジュンコ, 恵子=ケイコ, 美香=ミカ, 貞子=サダコ"
)
_ALIAS_SHARE = 0.6  # of special permanent resident households

# The rare categories of 住基法 第30条の45: none of them holds a residence card
# or a status of residence.
_RARE_CATEGORIES = (
    ("一時庇護許可者", 0.0002),
    ("仮滞在許可者", 0.0006),
    ("国籍喪失による経過滞在者", 0.0003),
)
_NEWBORN_SHARE = 0.01  # of children of younger parents: 出生による経過滞在者

_PREFECTURE_CITY = "愛知県さくら市"
# Town names with their (made-up) postal codes: one postal code per town, as in Japan.
_TOWNS = _names(
    "本町=487-0801, 桜台=487-0802, 中央=487-0803, 緑町=487-0804, 旭町=487-0805,"
    "栄町=487-0806, 東町=487-0807, 西町=487-0808, 南町=487-0811, 北町=487-0812,"
    "若葉=487-0813, 春日=487-0814, 八幡=487-0815, 新田=487-0816, 大手町=487-0821,"
    "幸町=487-0822, 泉=487-0823, 宮前=487-0824, 松原=487-0825, 富士見=487-0826"
)
_APARTMENTS = _names(
    "さくらハイツ, グリーンコーポ, メゾン桜台, サンライズマンション, コーポ中央,"
    "レジデンス旭, パークサイド栄, ハイツ若葉, ロイヤルマンション春日, シャトー泉,"
    "第2さくら荘, ヴィラ富士見, エスポワール八幡, コスモ新田"
)
_APARTMENT_SHARE = 0.55

_NOTES = {
    # Staff notes, as municipal exports carry them; "-" is how many systems print
    # "nothing", and it is also a character Excel reads as the start of a formula.
    "en": ("returned mail", "collect at counter", "interpreter needed", "-"),
    "ja": ("郵便物返戻あり", "窓口交付希望", "通訳同行", "-"),
}

# Letters a residence-card name may not keep when the file must be CP932: NFKD
# removes accents, these have no decomposition.
_UNDECOMPOSABLE = {
    "đ": "d",
    "Đ": "D",
    "ø": "o",
    "Ø": "O",
    "ß": "ss",
    "ẞ": "SS",
    "æ": "ae",
    "Æ": "AE",
    "œ": "oe",
    "Œ": "OE",
    "ł": "l",
    "Ł": "L",
    "ı": "i",
    "þ": "th",
    "Þ": "TH",
    "ð": "d",
    "Ð": "D",
}


@dataclass(frozen=True)
class SampleResult:
    """What ``write_sample`` wrote: the file and the counts a demo talks about."""

    path: Path
    rows: int
    households: int
    planned_move_outs: int
    carried_over_codes: int
    encoding: str  # "parquet" for Parquet files
    headers: str

    def to_json(self) -> dict[str, Any]:
        return {k: str(v) if isinstance(v, Path) else v for k, v in asdict(self).items()}

    def summary_rows(self) -> list[tuple[str, Any]]:
        return [(k, v) for k, v in self.to_json().items()]


# ---------------------------------------------------------------------------
# Pools as flat arrays, so that one NumPy index per row picks a name from the
# pool of that row's nationality (or nationality and sex).


@dataclass(frozen=True)
class _Pool:
    text: pl.Series  # the name as printed; null for an empty group's placeholder
    alt: pl.Series  # its other spelling (kanji, or an alias's kana); null if none
    offset: np.ndarray  # first index of each group
    size: np.ndarray  # entries in each group

    @classmethod
    def of(cls, groups: list[tuple[str, ...]]) -> _Pool:
        text: list[str | None] = []
        alt: list[str | None] = []
        offset, size = [], []
        for group in groups:
            offset.append(len(text))
            entries = group or ("",)  # an empty group still needs a slot to index
            size.append(len(entries))
            for entry in entries:
                first, _, second = entry.partition("=")
                text.append(first or None)
                alt.append(second or None)
        return cls(
            pl.Series(text, dtype=pl.String),
            pl.Series(alt, dtype=pl.String),
            np.array(offset, dtype=np.int64),
            np.array(size, dtype=np.int64),
        )

    def pick(self, group: np.ndarray | int, u: np.ndarray) -> np.ndarray:
        """Flat index of a uniformly chosen entry of ``group`` for each uniform ``u``."""
        return self.offset[group] + (u * self.size[group]).astype(np.int64)


_FAMILY = _Pool.of([n.family for n in _NATIONALITIES])
# Given names by nationality and sex: group = 2 * nationality + (1 if female).
_GIVEN = _Pool.of([pool for n in _NATIONALITIES for pool in (n.male, n.female)])
_ALIAS_FAMILY_POOL = _Pool.of([_ALIAS_FAMILY])
_ALIAS_GIVEN_POOL = _Pool.of([_ALIAS_MALE, _ALIAS_FEMALE])
_TOWN_POOL = _Pool.of([_TOWNS])  # alt holds the town's postal code
_APARTMENT_NAMES = pl.Series(_APARTMENTS, dtype=pl.String)

_WEIGHTS = np.array([n.weight for n in _NATIONALITIES], dtype=float)
_WEIGHTS /= _WEIGHTS.sum()
_STATUS_WEIGHTS = np.array([n.statuses for n in _NATIONALITIES], dtype=float)
_SPECIAL_SHARE = np.array([n.special_permanent for n in _NATIONALITIES])
_KANJI_SHARE = np.array([n.kanji for n in _NATIONALITIES])
_SINGLE_NAME_SHARE = np.array([n.single_name for n in _NATIONALITIES])
_KEEPS_SURNAME = np.array([n.keeps_surname for n in _NATIONALITIES])
_ISO = pl.Series([n.iso for n in _NATIONALITIES], dtype=pl.String)
_NAME_JA = pl.Series([n.name_ja for n in _NATIONALITIES], dtype=pl.String)
_LANGUAGE = pl.Series([n.language for n in _NATIONALITIES], dtype=pl.String)
_STATUS_NAMES = pl.Series(_STATUSES, dtype=pl.String)
_CATEGORY_NAMES = pl.Series(schema.FOREIGN_RESIDENT_CATEGORIES, dtype=pl.String)
_CATEGORY = {name: i for i, name in enumerate(schema.FOREIGN_RESIDENT_CATEGORIES)}


def _cumulative(weights: np.ndarray) -> np.ndarray:
    cum = np.cumsum(weights, axis=-1)
    return cum / cum[..., -1:]


_STATUS_CUM_SINGLE = _cumulative(_STATUS_WEIGHTS)
# Trainees cannot bring their family and students rarely do.
_STATUS_CUM_FAMILY = _cumulative(_STATUS_WEIGHTS * np.array([1, 1, 0, 0.5, 0.2, 1, 1]))


def _draw(cum: np.ndarray, u: np.ndarray) -> np.ndarray:
    """One categorical draw per row from row-wise cumulative distributions."""
    return (u[:, None] >= cum[:, :-1]).sum(axis=1)


# ---------------------------------------------------------------------------
# Generating


def generate_register(
    rows: int,
    *,
    seed: int | None = None,
    headers: HeaderStyle = "en",
    ascii_names: bool = False,
) -> pl.DataFrame:
    """A synthetic foreign resident register export of ``rows`` residents.

    Every column is text, missing values are null: the 18 recognised columns of
    schema.COLUMNS under their canonical names (``headers="en"``) or their first
    Japanese header (``headers="ja"``), then ``note`` (``備考``). The same
    ``seed`` gives the same frame; ``seed=None`` draws fresh entropy.
    ``ascii_names`` strips diacritics from names (Nguyễn -> Nguyen, Groß ->
    Gross), as a CP932 file needs.
    """
    _check_rows(rows)
    _check_headers(headers)
    frame = _register(int(rows), np.random.default_rng(seed), headers, ascii_names)
    return _rename(frame, headers)


def _check_rows(rows: int) -> None:
    if isinstance(rows, bool) or not isinstance(rows, int | np.integer) or rows < 0:
        raise UsageError(f"The number of rows must be a whole number, 0 or more (got {rows!r}).")
    # Residence card digits are a permutation of 10**8 numbers; no municipality
    # comes anywhere near that many residents.
    if rows >= 10**8:
        raise UsageError(f"{rows:,} rows is more than a synthetic register holds (under 10**8).")


def _check_headers(headers: str) -> None:
    if headers not in ("en", "ja"):
        raise UsageError(f"Unknown header style {headers!r}; use en or ja.")


def _check_encoding(encoding: str) -> str:
    key = encoding.strip().lower().replace("_", "-")
    key = {"utf8": "utf-8", "utf8-sig": "utf-8-sig"}.get(key, key)
    if key in ("shift-jis", "sjis", "shiftjis", "ms932", "windows-31j"):
        raise UsageError(f"Use cp932 for {encoding!r}: Shift_JIS as Windows writes it.")
    if key not in ENCODINGS:
        raise UsageError(f"Unknown encoding {encoding!r}; use one of {', '.join(ENCODINGS)}.")
    return key


def _rename(frame: pl.DataFrame, headers: str) -> pl.DataFrame:
    if headers == "en":
        return frame
    names = {c.name: c.aliases[0] for c in schema.COLUMNS}
    names[NOTE_COLUMN["en"]] = NOTE_COLUMN["ja"]
    return frame.rename(names)


def _households(rows: int, rng: np.random.Generator) -> np.ndarray:
    """Household sizes (1-5) adding up to ``rows``; the last household is cut short."""
    # ``rows`` draws of at least one person each always cover ``rows``.
    sizes = rng.choice(np.arange(1, 6), size=rows, p=_HOUSEHOLD_SIZES)
    ends = np.cumsum(sizes)
    count = int(np.searchsorted(ends, rows)) + 1 if rows else 0
    sizes = sizes[:count]
    if count:
        sizes[-1] -= ends[count - 1] - rows
    return sizes


def _register(rows: int, rng: np.random.Generator, headers: str, ascii_names: bool) -> pl.DataFrame:
    """The register under canonical column names (the extra column as ``note``)."""
    sizes = _households(rows, rng)
    count = len(sizes)
    starts = np.cumsum(sizes) - sizes
    household = np.repeat(np.arange(count), sizes)
    position = np.arange(rows) - starts[household]  # 0 head, 1 spouse, 2+ children

    # -- per household: who lives there, and where
    h_nat = rng.choice(len(_NATIONALITIES), size=count, p=_WEIGHTS)
    h_special = rng.random(count) < _SPECIAL_SHARE[h_nat]
    h_status = np.where(
        sizes > 1,
        _draw(_STATUS_CUM_FAMILY[h_nat], rng.random(count)),
        _draw(_STATUS_CUM_SINGLE[h_nat], rng.random(count)),
    )
    h_status = np.where(h_special, _SPECIAL, h_status)
    lo, hi = _HEAD_AGE[h_status, 0], _HEAD_AGE[h_status, 1]
    lo = np.where(sizes > 1, np.maximum(lo, 24), lo)  # old enough to have children
    h_age = lo + (hi - lo) * rng.random(count) ** 1.3  # residents skew young
    h_birth = (_DAY_AS_OF - h_age * _YEAR).astype(np.int64)
    h_head_female = rng.random(count) < 0.45
    h_family = _FAMILY.pick(h_nat, rng.random(count))
    h_kanji = rng.random(count) < np.where(h_special, 0.9, _KANJI_SHARE[h_nat])
    h_alias = h_special & (rng.random(count) < _ALIAS_SHARE)
    h_alias_family = _ALIAS_FAMILY_POOL.pick(0, rng.random(count))
    h_upper = rng.random(count) < _UPPERCASE_SHARE
    h_fate = rng.random(count)  # moving out, arriving with a code, or neither
    h_move_out_day = _DAY_AS_OF + rng.integers(0, 60, count)
    h_language = rng.random(count) < _LANGUAGE_SHARE
    homes = pl.DataFrame(
        {
            "id": rng.integers(1_000, 100_000) + np.cumsum(rng.integers(1, 9, count)),
            "town": _TOWN_POOL.pick(0, rng.random(count)),
            "chome": rng.integers(1, 6, count),
            "ban": rng.integers(1, 31, count),
            "go": rng.integers(1, 26, count),
            "hyphenated": rng.random(count) < 0.5,
            "apartment": rng.random(count) < _APARTMENT_SHARE,
            "building": rng.integers(0, len(_APARTMENTS), count),
            "room": rng.integers(1, 9, count) * 100 + rng.integers(1, 13, count),
            "room_suffix": rng.random(count) < 0.5,
        },
        schema_overrides={"id": pl.Int64},
    ).select(
        pl.col("id").cast(pl.String).str.zfill(9).alias("household_id"),
        pl.lit(_TOWN_POOL.alt).gather(pl.col("town")).alias("postal_code"),
        _address().alias("address"),
    )

    # -- per person
    def of_household(values: np.ndarray) -> np.ndarray:
        return values[household]

    nat = of_household(h_nat)
    special = of_household(h_special)
    spouse = position == 1
    child = position >= 2
    # A few spouses are of another nationality (never in special permanent households).
    mixed = spouse & ~special & (rng.random(rows) < 0.05)
    nat = np.where(mixed, rng.choice(len(_NATIONALITIES), size=rows, p=_WEIGHTS), nat)
    mixed &= nat != of_household(h_nat)

    head_female = of_household(h_head_female)
    female = np.where(
        position == 0, head_female, np.where(spouse, ~head_female, rng.random(rows) < 0.49)
    )
    # Chinese, Korean, Taiwanese and Vietnamese wives keep their own surname.
    own_surname = mixed | (spouse & _KEEPS_SURNAME[nat] & (rng.random(rows) < 0.85))
    family = np.where(own_surname, _FAMILY.pick(nat, rng.random(rows)), of_household(h_family))
    no_family = rng.random(rows) < _SINGLE_NAME_SHARE[nat]
    given = _given_names(2 * nat + female, household, starts, rng)

    head_status = of_household(h_status)
    status = np.where(position == 0, head_status, _MEMBER_STATUS[head_status])
    status = np.where(
        (position > 0) & (head_status == _PERMANENT) & (rng.random(rows) < 0.5),
        _PERMANENT,
        status,
    )
    category = np.where(status == _SPECIAL, _CATEGORY["特別永住者"], _CATEGORY["中長期在留者"])

    head_birth = of_household(h_birth)
    spouse_birth = head_birth + (rng.normal(0, 4, rows) * _YEAR).astype(np.int64)
    spouse_birth = np.minimum(spouse_birth, _DAY_AS_OF - int(20 * _YEAR))
    child_lo = head_birth + int(18 * _YEAR)
    child_hi = np.maximum(np.minimum(head_birth + int(45 * _YEAR), _LATEST_BIRTH), child_lo)
    child_birth = child_lo + (rng.random(rows) * (child_hi - child_lo)).astype(np.int64)
    birth = np.where(position == 0, head_birth, np.where(spouse, spouse_birth, child_birth))
    birth = np.clip(birth, _EARLIEST_BIRTH, _LATEST_BIRTH)

    # Rare categories: babies born here to younger parents, and a few adults.
    newborn = (
        child
        & ~special
        & (head_birth > _DAY_AS_OF - int(45 * _YEAR))
        & (rng.random(rows) < _NEWBORN_SHARE)
    )
    # 31-60 days old: still within their 60 days, and born before any run today.
    birth = np.where(newborn, _DAY_AS_OF - rng.integers(31, 61, rows), birth)
    category = np.where(newborn, _CATEGORY["出生による経過滞在者"], category)
    u = rng.random(rows)
    threshold = 0.0
    for name, share in _RARE_CATEGORIES:
        hit = ~special & ~child & (u >= threshold) & (u < threshold + share)
        category = np.where(hit, _CATEGORY[name], category)
        threshold += share
    has_card = category <= _CATEGORY["特別永住者"]
    expires = has_card & ~np.isin(status, [_PERMANENT, _SPECIAL])

    fate = of_household(h_fate)
    move_out = fate < _MOVE_OUT_SHARE
    carried = (fate >= _MOVE_OUT_SHARE) & (fate < _MOVE_OUT_SHARE + _CARRIED_CODE_SHARE)
    resident_code = pl.Series(np.full(rows, None), dtype=pl.String)
    if carried.any():
        resident_code = resident_code.scatter(
            np.flatnonzero(carried), _distinct_codes(rng, int(carried.sum()))
        )

    people = pl.DataFrame(
        {
            "resident_id": rng.integers(1_000, 100_000) + np.cumsum(rng.integers(1, 6, rows)),
            "family": np.where(no_family, -1, family),
            "given": given,
            "upper": of_household(h_upper),
            "kanji": of_household(h_kanji),
            "alias": of_household(h_alias),
            "alias_family": of_household(h_alias_family),
            "alias_given": _ALIAS_GIVEN_POOL.pick(female.astype(np.int64), rng.random(rows)),
            "birth": birth,
            "date_format": rng.choice(3, size=rows, p=[0.6, 0.3, 0.1]),
            "female": female,
            "numeric_sex": rng.random(rows) < _NUMERIC_SEX_SHARE,
            "nat": nat,
            "category": category,
            "status": status,
            "has_card": has_card,
            "expires": expires,
            "expiry": rng.integers(_EARLIEST_EXPIRY, _LATEST_EXPIRY + 1, rows),
            "card": _card_numbers(rng, rows),
            "move_out": move_out,
            "move_out_day": of_household(h_move_out_day),
            "resident_code": resident_code,
            "language": of_household(h_language),
            "special": special,
            "note": np.where(
                rng.random(rows) < _NOTE_SHARE, rng.integers(0, len(_NOTES["en"]), rows), -1
            ),
        },
        schema_overrides={"resident_id": pl.Int64, "family": pl.Int64, "note": pl.Int64},
    )
    full_name = pl.concat_str(
        [_lookup(_FAMILY.text, "family"), _lookup(_GIVEN.text, "given")],
        separator=" ",
        ignore_nulls=True,
    )
    full_name = pl.when(pl.col("upper")).then(full_name.str.to_uppercase()).otherwise(full_name)
    if ascii_names:
        full_name = _strip_diacritics(full_name)
    sex_words = ("M", "F") if headers == "en" else ("男", "女")
    register = people.select(
        pl.col("resident_id").cast(pl.String).str.zfill(9),
        full_name.alias("name"),
        pl.when(pl.col("kanji"))
        .then(
            pl.concat_str(
                [_lookup(_FAMILY.alt, "family"), _lookup(_GIVEN.alt, "given")],
                separator="\u3000",  # kanji names are spaced with a full-width space
            )
        )
        .alias("name_kanji"),
        *(
            pl.when(pl.col("alias"))
            .then(
                pl.concat_str(
                    [
                        _lookup(getattr(_ALIAS_FAMILY_POOL, part), "alias_family"),
                        _lookup(getattr(_ALIAS_GIVEN_POOL, part), "alias_given"),
                    ],
                    separator="\u3000",
                )
            )
            .alias(column)
            for column, part in (("alias", "text"), ("alias_kana", "alt"))
        ),
        _date("birth").alias("birth_date"),
        pl.when(pl.col("numeric_sex"))
        .then(pl.when(pl.col("female")).then(pl.lit("2")).otherwise(pl.lit("1")))
        .when(pl.col("female"))
        .then(pl.lit(sex_words[1]))
        .otherwise(pl.lit(sex_words[0]))
        .alias("sex"),
        _lookup(_ISO if headers == "en" else _NAME_JA, "nat").alias("nationality"),
        _lookup(_CATEGORY_NAMES, "category").alias("foreign_resident_category"),
        pl.when(pl.col("has_card"))
        .then(_lookup(_STATUS_NAMES, "status"))
        .alias("residence_status"),
        pl.when(pl.col("expires")).then(_date("expiry")).alias("stay_expiry"),
        pl.when(pl.col("has_card")).then(pl.col("card")).alias("residence_card_number"),
        pl.when(pl.col("move_out")).then(_date("move_out_day")).alias("planned_move_out_date"),
        pl.col("resident_code"),
        # Special permanent residents were born and schooled in Japan.
        pl.when(pl.col("language"))
        .then(pl.when(pl.col("special")).then(pl.lit("ja")).otherwise(_lookup(_LANGUAGE, "nat")))
        .alias("language"),
        pl.when(pl.col("note") >= 0)
        .then(_lookup(pl.Series(_NOTES[headers], dtype=pl.String), "note"))
        .alias(NOTE_COLUMN["en"]),
    )
    register = register.with_columns(homes.select(pl.all().gather(household)))
    return register.select(*(c.name for c in schema.COLUMNS), NOTE_COLUMN["en"])


def _given_names(
    group: np.ndarray, household: np.ndarray, starts: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Given names (flat pool indices) that no two members of a household share.

    Members walk forward through their pool from a household's random starting
    point in steps of at most a fifth of the pool, so five people never wrap
    round onto a name already taken.
    """
    size = _GIVEN.size[group]
    step = 1 + (rng.random(len(group)) * np.maximum(size // 5, 1)).astype(np.int64)
    walked = np.cumsum(step)
    walked -= walked[starts][household]  # the head starts at the household's point
    start = rng.random(len(starts))[household]
    return _GIVEN.offset[group] + ((start * size).astype(np.int64) + walked) % size


def _lookup(pool: pl.Series, index: str) -> pl.Expr:
    """``pool[index]`` per row; a negative index means no value."""
    position = pl.col(index)
    return pl.when(position >= 0).then(pl.lit(pool).gather(position.clip(0)))


def _date(column: str) -> pl.Expr:
    """Days since 1970 as text in the row's format: ISO, slashes, or bare digits."""
    day = pl.col(column).cast(pl.Int32).cast(pl.Date)
    return (
        pl.when(pl.col("date_format") == 0)
        .then(day.dt.strftime("%Y-%m-%d"))
        .when(pl.col("date_format") == 1)
        .then(day.dt.strftime("%Y/%m/%d"))
        .otherwise(day.dt.strftime("%Y%m%d"))
    )


def _address() -> pl.Expr:
    """A household's address: 愛知県さくら市, town, 丁目-番-号, maybe flat and room."""
    chome, ban, go = (pl.col(c).cast(pl.String) for c in ("chome", "ban", "go"))
    block = (
        pl.when(pl.col("hyphenated"))
        .then(pl.concat_str([chome, ban, go], separator="-"))
        .otherwise(pl.concat_str([chome, pl.lit("丁目"), ban, pl.lit("番"), go, pl.lit("号")]))
    )
    flat = pl.when(pl.col("apartment")).then(
        pl.concat_str(
            [
                pl.lit(" "),
                pl.lit(_APARTMENT_NAMES).gather(pl.col("building")),
                pl.col("room").cast(pl.String),
                pl.when(pl.col("room_suffix")).then(pl.lit("号室")).otherwise(pl.lit("")),
            ]
        )
    )
    return pl.concat_str(
        [pl.lit(_PREFECTURE_CITY), pl.lit(_TOWN_POOL.text).gather(pl.col("town")), block, flat],
        ignore_nulls=True,
    )


def _distinct_codes(rng: np.random.Generator, count: int) -> pl.Series:
    """``count`` distinct valid resident record codes, as 11-digit strings."""
    bodies = rng.integers(0, rcode.BODY_SPACE, count, dtype=np.uint64)
    # Collisions are rare (count is tiny next to 10**10) but must not survive:
    # redraw the later of each repeated pair until none is left.
    while True:
        _, first = np.unique(bodies, return_index=True)
        repeated = np.setdiff1d(np.arange(count), first)
        if not len(repeated):
            break
        bodies[repeated] = rng.integers(0, rcode.BODY_SPACE, len(repeated), dtype=np.uint64)
    strings = rcode.codes_to_strings(rcode.codes_from_bodies(bodies))
    return pl.Series(strings, dtype=pl.String)


def _card_numbers(rng: np.random.Generator, count: int) -> pl.Series:
    """Distinct residence card numbers: two letters, eight digits, two letters.

    The digits are an affine permutation of 0..10**8-1 applied to a shuffled row
    index, so they never repeat and follow no visible order.
    """
    multiplier = int(rng.integers(10**7, 10**8)) | 1
    if multiplier % 5 == 0:
        multiplier += 2  # coprime to 10**8: odd and not a multiple of 5
    offset = int(rng.integers(0, 10**8))
    digits = (rng.permutation(count).astype(np.int64) * multiplier + offset) % 10**8
    chars = np.empty((count, 12), dtype=np.uint8)
    chars[:, :2] = rng.integers(ord("A"), ord("Z") + 1, (count, 2))
    chars[:, 10:] = rng.integers(ord("A"), ord("Z") + 1, (count, 2))
    for place in range(9, 1, -1):
        chars[:, place] = ord("0") + digits % 10
        digits //= 10
    return pl.Series(chars.view("S12")[:, 0] if count else [], dtype=pl.Binary).cast(pl.String)


def _strip_diacritics(names: pl.Expr) -> pl.Expr:
    """Names in plain ASCII letters: accents dropped, ß -> ss, đ -> d, ø -> o."""
    stripped = names.str.normalize("NFKD").str.replace_all(r"\p{M}", "")
    return stripped.str.replace_many(list(_UNDECOMPOSABLE), list(_UNDECOMPOSABLE.values()))


# ---------------------------------------------------------------------------
# Writing


def write_sample(
    path: Path,
    rows: int,
    *,
    seed: int | None = None,
    headers: HeaderStyle = "en",
    encoding: str = "utf-8",
) -> SampleResult:
    """Write a synthetic register export to ``path`` (.csv or .parquet) and describe it.

    CSV is written in ``encoding`` (utf-8, utf-8-sig with a byte-order mark, or
    cp932 with Windows line endings); for cp932 names lose their diacritics so
    that every character is representable. Parquet ignores ``encoding``. The
    file is created private (0600) and appears complete or not at all.
    """
    path = Path(path)
    suffix = check_table_suffix(path)
    encoding = _check_encoding(encoding)
    _check_rows(rows)
    _check_headers(headers)
    csv_encoding = encoding if suffix == ".csv" else "parquet"
    frame = _register(int(rows), np.random.default_rng(seed), headers, csv_encoding == "cp932")
    result = SampleResult(
        path=path,
        rows=frame.height,
        households=frame["household_id"].n_unique() if frame.height else 0,
        planned_move_outs=int(frame["planned_move_out_date"].is_not_null().sum()),
        carried_over_codes=int(frame["resident_code"].is_not_null().sum()),
        encoding=csv_encoding,
        headers=headers,
    )
    frame = _rename(frame, headers)
    with atomic_output(path) as tmp:
        if suffix == ".parquet":
            frame.write_parquet(tmp, compression="zstd")
        elif csv_encoding == "cp932":
            _write_cp932(frame, tmp)
        else:
            frame.write_csv(tmp, include_bom=csv_encoding == "utf-8-sig", null_value="")
    return result


def _write_cp932(frame: pl.DataFrame, path: Path, chunk_rows: int = 200_000) -> None:
    """CSV in CP932 with CRLF line endings, as Windows-based municipal systems write it.

    Polars writes only UTF-8, so the text is re-encoded a slice at a time to
    keep memory flat for large registers.
    """
    with open(path, "wb") as handle:
        for start in range(0, max(frame.height, 1), chunk_rows):
            text = frame.slice(start, chunk_rows).write_csv(
                include_header=start == 0, null_value="", line_terminator="\r\n"
            )
            handle.write(text.encode("cp932"))
