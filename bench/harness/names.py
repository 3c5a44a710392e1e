"""Chinese patient names with their pinyin, for synthetic studies (DICOM PN with two groups)."""

from __future__ import annotations

import random

# (hanzi, pinyin) of common surnames, most common first.
SURNAMES = [
    ("王", "Wang"),
    ("李", "Li"),
    ("张", "Zhang"),
    ("刘", "Liu"),
    ("陈", "Chen"),
    ("杨", "Yang"),
    ("黄", "Huang"),
    ("赵", "Zhao"),
    ("吴", "Wu"),
    ("周", "Zhou"),
    ("徐", "Xu"),
    ("孙", "Sun"),
    ("马", "Ma"),
    ("朱", "Zhu"),
    ("胡", "Hu"),
    ("郭", "Guo"),
    ("何", "He"),
    ("高", "Gao"),
    ("林", "Lin"),
    ("罗", "Luo"),
    ("郑", "Zheng"),
    ("梁", "Liang"),
    ("谢", "Xie"),
    ("宋", "Song"),
    ("唐", "Tang"),
    ("许", "Xu"),
    ("韩", "Han"),
    ("冯", "Feng"),
    ("邓", "Deng"),
    ("曹", "Cao"),
    ("彭", "Peng"),
    ("曾", "Zeng"),
    ("肖", "Xiao"),
    ("田", "Tian"),
    ("董", "Dong"),
    ("袁", "Yuan"),
    ("潘", "Pan"),
    ("于", "Yu"),
    ("蒋", "Jiang"),
    ("蔡", "Cai"),
]
GIVEN = [
    ("伟", "Wei"),
    ("芳", "Fang"),
    ("娜", "Na"),
    ("敏", "Min"),
    ("静", "Jing"),
    ("丽", "Li"),
    ("强", "Qiang"),
    ("磊", "Lei"),
    ("军", "Jun"),
    ("洋", "Yang"),
    ("勇", "Yong"),
    ("艳", "Yan"),
    ("杰", "Jie"),
    ("娟", "Juan"),
    ("涛", "Tao"),
    ("明", "Ming"),
    ("超", "Chao"),
    ("秀", "Xiu"),
    ("霞", "Xia"),
    ("平", "Ping"),
    ("刚", "Gang"),
    ("桂", "Gui"),
    ("英", "Ying"),
    ("华", "Hua"),
    ("建", "Jian"),
    ("国", "Guo"),
    ("文", "Wen"),
    ("小", "Xiao"),
    ("红", "Hong"),
    ("海", "Hai"),
    ("玉", "Yu"),
    ("兰", "Lan"),
    ("春", "Chun"),
    ("志", "Zhi"),
    ("鹏", "Peng"),
    ("雪", "Xue"),
    ("梅", "Mei"),
    ("晓", "Xiao"),
    ("辉", "Hui"),
    ("德", "De"),
]

SURNAME_WEIGHTS = [1 / (rank + 1) for rank in range(len(SURNAMES))]


def person_name(rng: random.Random) -> tuple[str, str, str]:
    """(DICOM PN "Wang^Xiaoming=王^小明", surname pinyin, given-name pinyin)."""
    # Surnames follow a long tail: the first few cover a large share, as in China.
    surname = rng.choices(SURNAMES, weights=SURNAME_WEIGHTS)[0]
    given = [rng.choice(GIVEN) for _ in range(rng.choice((1, 2, 2, 2)))]
    given_pinyin = "".join(p for _h, p in given).capitalize()
    given_hanzi = "".join(h for h, _p in given)
    pn = f"{surname[1]}^{given_pinyin}={surname[0]}^{given_hanzi}"
    return pn, surname[1], given_pinyin
