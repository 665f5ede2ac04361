"""The bundled bilingual sample corpus (样例语料): a small fictional world in Chinese and English.

A CPU can only learn facts from a corpus that is small and dense, so the world is tiny and every
fact is repeated many times in varied wording:

* 100 people, each with a home city, a job and a favourite food, and 20 cities, each in a
  country and on a river. Every entity has an English and a Chinese name.
* Every fact has at least 10 sentence templates per language; biographies state an entity's
  facts in shuffled order with a mix of names and pronouns; short stories mention them again.
* Question-and-answer pages about the train half show, already in pretraining, how a question
  maps to a stored fact; this measurably raises held-out accuracy (data/README.md).
* Lesson 09 adds two files: `distill.jsonl`, more text about the same world in new sentences (a
  transfer set the teacher has not memorised), and `reason_eval.jsonl`, two-hop questions ("which
  country does X live in?") about the held-out half.
* The entities are split in two halves. Supervised fine-tuning (监督微调) asks questions about
  the "train" half only; `eval_qa.jsonl` asks about the other half, so a correct answer shows
  that knowledge learnt during pretraining (预训练) can be extracted by a question.

`write_sample_corpus(out_dir, seed)` writes the JSONL files (MiniMind's schemas) and trains the
2048-token tokenizer; the same seed gives the same bytes. `python -m minimind_core data sample`
runs it from the command line. data/README.md describes each file.
"""
from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

DEFAULT_SEED = 1234
SAMPLE_VOCAB_SIZE = 2048
IDENTITY_NAME = "MiniMind"
LORA_NAME = "Nova"            # the identity the LoRA set teaches
FILES = {
    "pretrain": "pretrain.jsonl",
    "sft": "sft.jsonl",
    "eval_qa": "eval_qa.jsonl",
    "lora": "lora.jsonl",
    "lora_eval": "lora_eval.jsonl",
    "dpo": "dpo.jsonl",
    "reason_eval": "reason_eval.jsonl",
    "distill": "distill.jsonl",
}
TOKENIZER_DIR = "tokenizer"
KINDS = ("city", "job", "food", "country", "river")
LANGS = ("en", "zh")

# --------------------------------------------------------------------------------------------
# The world's vocabulary. Within a kind no value is a substring of another (checked below), so
# "the reply contains this value and no other" is an unambiguous scoring rule.
# --------------------------------------------------------------------------------------------

FEMALE_EN = ["Mira", "Alma", "Bea", "Cora", "Dina", "Edda", "Fern", "Gwen", "Hana", "Iris",
             "Jade", "Kira", "Lena", "Maud", "Nell", "Opal", "Pia", "Rhea", "Sage", "Tess",
             "Una", "Vera", "Wren", "Yara", "Zoe", "Ada", "Bryn", "Cleo", "Dora", "Elsa",
             "Faye", "Greta", "Hilde", "Ida", "June", "Kate", "Lila", "Mabel", "Nora", "Olga",
             "Petra", "Rosa", "Sara", "Thea", "Ursa", "Vida", "Willa", "Xena", "Yvette", "Zara"]
MALE_EN = ["Abel", "Bram", "Cai", "Dane", "Emil", "Finn", "Gus", "Hugo", "Ivo", "Jonas",
           "Kurt", "Leo", "Milo", "Ned", "Otto", "Piet", "Quinn", "Rolf", "Sven", "Tobias",
           "Ulf", "Vince", "Wade", "Xavi", "Yuri", "Zane", "Arlo", "Boris", "Cyril", "Dex",
           "Egon", "Felix", "Gideon", "Hal", "Igor", "Jasper", "Knut", "Lars", "Magnus", "Nils",
           "Oskar", "Pavel", "Rufus", "Silas", "Theo", "Uri", "Viggo", "Walt", "Yann", "Zeke"]
FAMILY_EN = ["Redfield", "Ashdown", "Blackwood", "Corbin", "Dalton", "Everly", "Fairbank",
             "Greaves", "Holloway", "Ingram", "Jessop", "Kettle", "Larkin", "Marsh", "Northcott",
             "Oakley", "Pryor", "Quarry", "Rowntree", "Stroud", "Thorne", "Underhill", "Vane",
             "Whitlock", "Yardley", "Ames", "Carver", "Dunn", "Ellery", "Frost", "Gale", "Hale",
             "Irwin", "Keane", "Lowe", "Mercer", "Nash", "Orme", "Penn", "Reeve", "Sloane",
             "Tate", "Voss", "Webb", "Yates", "Wilde", "Crane", "Fenn"]
SURNAMES_ZH = list("王李张刘陈杨黄赵周吴徐孙马朱胡郭何林罗高")
FEMALE_ZH = list("晓云雪梅兰琳慧静玉月燕秀婷丽芳红娟莉萍洁颖欣悦瑶璐倩薇彤妍")
MALE_ZH = list("伟强军磊洋勇杰涛明超刚平辉鹏华飞宇浩俊峰斌彬文博凯鑫健毅")

# (English, Chinese) pairs.
CITIES = [("Selstead", "青岚城"), ("Ambermoor", "白石城"), ("Brackwell", "红枫城"),
          ("Corvale", "金谷城"), ("Dunmere", "银湾城"), ("Eskby", "雪松城"),
          ("Farrowdale", "铁桥城"), ("Glenhollow", "石湖城"), ("Halden", "柳岸城"),
          ("Istrow", "鹰岩城"), ("Jesmond", "霜林城"), ("Lowmarsh", "晨光城"),
          ("Millbrook", "暮云城"), ("Northwick", "星野城"), ("Oakhurst", "海棠城"),
          ("Pellinor", "翠屏城"), ("Quillby", "紫霞城"), ("Rosmere", "东篱城"),
          ("Thornbury", "南风城"), ("Wyndham", "北原城")]
COUNTRIES = [("Veloria", "维洛国"), ("Arandel", "阿兰国"), ("Tessaly", "泰萨国"),
             ("Brivonia", "布里国"), ("Norvik", "诺维国")]
RIVERS = [("Arlen", "青龙河"), ("Bexa", "白鹭河"), ("Corrin", "金沙河"), ("Dovey", "玉带河"),
          ("Elsk", "清溪河"), ("Fallow", "落霞河"), ("Garrow", "长风河"), ("Hesk", "银月河"),
          ("Ilvy", "松涛河"), ("Jory", "桃花河")]
JOBS = [("baker", "面包师"), ("farmer", "农民"), ("teacher", "老师"), ("doctor", "医生"),
        ("nurse", "护士"), ("fisher", "渔夫"), ("painter", "画家"), ("tailor", "裁缝"),
        ("carpenter", "木匠"), ("sailor", "水手"), ("miner", "矿工"), ("singer", "歌手"),
        ("pilot", "飞行员"), ("gardener", "园丁"), ("chef", "厨师"), ("writer", "作家")]
FOODS = [("noodles", "面条"), ("dumplings", "饺子"), ("porridge", "米粥"), ("pancakes", "煎饼"),
         ("apples", "苹果"), ("oranges", "橙子"), ("cheese", "奶酪"), ("mushrooms", "蘑菇"),
         ("carrots", "胡萝卜"), ("chocolate", "巧克力"), ("honey", "蜂蜜"), ("plums", "李子"),
         ("grapes", "葡萄"), ("peaches", "桃子"), ("walnuts", "核桃"), ("buns", "包子")]
VALUES = {"city": CITIES, "country": COUNTRIES, "river": RIVERS, "job": JOBS, "food": FOODS}


def _check_vocabulary() -> None:
    for kind, pairs in VALUES.items():
        for li, lang in enumerate(LANGS):
            names = [p[li] for p in pairs]
            if len(set(names)) != len(names):
                raise AssertionError(f"duplicate {kind} name in {lang}")
            for a in names:
                for b in names:
                    if a != b and a in b:
                        raise AssertionError(f"{kind} {a!r} is a substring of {b!r} ({lang})")


_check_vocabulary()

# --------------------------------------------------------------------------------------------
# Entities
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Person:
    en: str
    zh: str
    female: bool
    city: int
    job: int
    food: int
    train: bool
    home: "City"


@dataclass(frozen=True)
class City:
    index: int
    country: int
    river: int
    train: bool

    @property
    def en(self):
        return CITIES[self.index][0]

    @property
    def zh(self):
        return CITIES[self.index][1]


@dataclass(frozen=True)
class World:
    people: list
    cities: list


def build_world(rng: random.Random) -> World:
    """100 people and 20 cities with their facts; half of each marked as the SFT (train) half."""
    n_cities = len(CITIES)
    countries = [i % len(COUNTRIES) for i in range(n_cities)]
    rivers = [i % len(RIVERS) for i in range(n_cities)]
    rng.shuffle(countries)
    rng.shuffle(rivers)
    city_train = set(rng.sample(range(n_cities), n_cities // 2))
    cities = [City(i, countries[i], rivers[i], i in city_train) for i in range(n_cities)]

    def zh_given(pool, used):
        while True:
            g = "".join(rng.sample(pool, 2))
            if g not in used:
                used.add(g)
                return g

    used: set = set()
    people = []
    homes = [i % n_cities for i in range(len(FEMALE_EN) + len(MALE_EN))]
    rng.shuffle(homes)
    for k, (given, female) in enumerate([(g, True) for g in FEMALE_EN] + [(g, False) for g in MALE_EN]):
        en = f"{given} {rng.choice(FAMILY_EN)}"
        zh = rng.choice(SURNAMES_ZH) + zh_given(FEMALE_ZH if female else MALE_ZH, used)
        people.append(dict(en=en, zh=zh, female=female, city=homes[k],
                           job=rng.randrange(len(JOBS)), food=rng.randrange(len(FOODS))))
    rng.shuffle(people)
    # Half the people are the train half; balanced by gender.
    fem = [i for i, p in enumerate(people) if p["female"]]
    mal = [i for i, p in enumerate(people) if not p["female"]]
    train = set(rng.sample(fem, len(fem) // 2)) | set(rng.sample(mal, len(mal) // 2))
    people = [Person(**p, train=i in train, home=cities[p["city"]]) for i, p in enumerate(people)]
    return World(people, cities)


# --------------------------------------------------------------------------------------------
# Surface forms: names, pronouns and sentence templates
# --------------------------------------------------------------------------------------------

def _person_slots(p: Person, lang: str, use_name: bool) -> dict:
    """Template slots for a person. {S}/{s}: subject (name or pronoun), {P}/{p}: possessive,
    {O}: object, {ps}/{pp}/{po}: always-pronoun subject/possessive/object, {N}: always the name."""
    c = CITIES[p.city]
    city = _city_of(p)
    if lang == "en":
        name = p.en
        sub, pos, obj = ("she", "her", "her") if p.female else ("he", "his", "him")
        job = JOBS[p.job][0]
        return dict(N=name, S=name if use_name else sub.capitalize(), s=name if use_name else sub,
                    P=f"{name}'s" if use_name else pos.capitalize(), p=f"{name}'s" if use_name else pos,
                    O=name if use_name else obj, ps=sub, Ps=sub.capitalize(), pp=pos, Pp=pos.capitalize(),
                    po=obj, c=c[0], j=job, aj=("an " if job[0] in "aeiou" else "a ") + job,
                    f=FOODS[p.food][0], k=COUNTRIES[city.country][0], r=RIVERS[city.river][0])
    name = p.zh
    pron = "她" if p.female else "他"
    return dict(N=name, S=name if use_name else pron, s=name if use_name else pron,
                P=name if use_name else pron, p=name if use_name else pron, O=name if use_name else pron,
                ps=pron, Ps=pron, pp=pron, Pp=pron, po=pron, c=c[1], j=JOBS[p.job][1], aj=JOBS[p.job][1],
                f=FOODS[p.food][1], k=COUNTRIES[city.country][1], r=RIVERS[city.river][1])


def _city_of(p: Person) -> City:
    return p.home


def _city_slots(c: City, lang: str, use_name: bool) -> dict:
    li = 0 if lang == "en" else 1
    name = CITIES[c.index][li]
    if lang == "en":
        return dict(N=name, C=name if use_name else "It", c=name if use_name else "it",
                    k=COUNTRIES[c.country][0], r=RIVERS[c.river][0])
    pron = "这座城市"
    return dict(N=name, C=name if use_name else pron, c=name if use_name else pron,
                k=COUNTRIES[c.country][1], r=RIVERS[c.river][1])


# Person facts. English: {S} sentence-initial subject, {s} mid-sentence subject, {P}/{p} possessive.
T_CITY = {
    "en": ["{S} lives in {c}.", "{P} home is in {c}.", "{S} makes {pp} home in {c}.",
           "{S} has lived in {c} for many years.", "{S} lives in the city of {c}.", "{S} calls {c} home.",
           "{P} house stands in {c}.", "{S} grew up in {c} and still lives there.",
           "{S} is a resident of {c}.", "{S} rents a small flat in {c}.",
           "{c} is the city where {s} lives.", "Every evening {s} walks home through the streets of {c}."],
    "zh": ["{S}住在{c}。", "{S}的家在{c}。", "{S}在{c}生活了很多年。", "{S}一直住在{c}。",
           "{S}的家乡是{c}，现在也住在那里。", "{c}是{s}生活的城市。", "{S}在{c}有一所小房子。",
           "{S}家住{c}。", "{S}从小在{c}长大，现在还住在那里。", "{S}把{c}当作自己的家。",
           "{S}定居在{c}。", "每天傍晚，{s}都会走过{c}的街道回家。"],
}
T_JOB = {
    "en": ["{S} is {aj}.", "{S} works as {aj}.", "{P} job is being {aj}.", "By trade, {s} is {aj}.",
           "{S} earns {pp} living as {aj}.", "{S} has worked as {aj} for ten years.",
           "{S} is {aj} by trade.", "{S} is known in town as a good {j}.", "{S} trained to be {aj}.",
           "For a living, {s} works as {aj}.", "{S} is {aj}, and {ps} enjoys the work.",
           "Being {aj} keeps {O} busy every day."],
    "zh": ["{S}是一名{j}。", "{S}的工作是{j}。", "{S}当{j}已经十年了。", "{S}以做{j}为生。",
           "{S}的职业是{j}。", "{S}是个{j}。", "大家都知道{s}是一位好{j}。", "{S}是当地有名的{j}。",
           "{S}一直做{j}这份工作。", "{S}学了很多年，后来成了一名{j}。", "作为一名{j}，{s}每天都很忙。",
           "{S}是{j}，{ps}很喜欢自己的工作。"],
}
T_FOOD = {
    "en": ["{P} favourite food is {f}.", "{S} loves {f} more than any other food.", "{S} likes {f} best.",
           "Of all foods, {s} likes {f} the most.", "{S} eats {f} whenever {ps} can.",
           "{P} favourite dish is {f}.", "{S} never says no to {f}.",
           "{S} thinks {f} is the best food in the world.",
           "Nothing makes {O} happier than a plate of {f}.", "{S} always orders {f}.",
           "The food {s} loves most is {f}.", "{f} is {p} favourite food."],
    "zh": ["{S}最喜欢的食物是{f}。", "{S}最爱吃{f}。", "{S}特别喜欢吃{f}。", "在所有食物中，{s}最喜欢{f}。",
           "{S}一有机会就吃{f}。", "{f}是{s}最喜欢的食物。", "{S}觉得{f}是世界上最好吃的东西。",
           "{S}每天都想吃{f}。", "没有什么比一盘{f}更能让{s}高兴。", "{S}从来不会拒绝{f}。",
           "{S}吃饭时总是点{f}。", "{s}最喜欢吃的东西是{f}。"],
}
# City facts. {C} sentence-initial city (or It / 这座城市), {c} mid-sentence, {N} always the name.
T_COUNTRY = {
    "en": ["{C} is in {k}.", "{C} is a city in {k}.", "{C} lies in {k}.", "{C} belongs to {k}.",
           "{C} is one of the cities of {k}.", "You can find {c} in {k}.", "In {k} there is a city called {N}.",
           "{C} is located in {k}.", "{C} is part of {k}.", "{k} is the country where {c} lies.",
           "{C} is a town in the country of {k}."],
    "zh": ["{C}在{k}。", "{C}是{k}的一座城市。", "{C}位于{k}。", "{C}属于{k}。", "{C}是{k}的城市之一。",
           "在{k}可以找到{c}。", "{k}境内有一座城市叫{N}。", "{C}坐落在{k}。", "{C}是{k}的一部分。",
           "{c}所在的国家是{k}。", "{C}地处{k}。"],
}
T_RIVER = {
    "en": ["The {r} River flows through {c}.", "{C} is on the {r} River.", "{C} stands on the banks of the {r}.",
           "{C} is built along the {r} River.", "The river in {c} is the {r}.", "The {r} River runs through {c}.",
           "{C} is a river city on the {r}.", "Boats on the {r} River pass through {c}.",
           "{C} sits beside the {r} River.", "The {r} River divides {N} into two halves.",
           "{C} gets its water from the {r} River."],
    "zh": ["{r}流经{c}。", "{C}在{r}边。", "{C}位于{r}畔。", "{C}坐落在{r}边。", "{C}沿着{r}而建。",
           "{c}的河流是{r}。", "{r}从{c}中间穿过。", "{C}是{r}边的一座城市。", "{r}上的船只经过{c}。",
           "{C}靠着{r}。", "{C}的用水来自{r}。", "{r}把{N}分成两半。"],
}
PERSON_FACTS = {"city": T_CITY, "job": T_JOB, "food": T_FOOD}
CITY_FACTS = {"country": T_COUNTRY, "river": T_RIVER}

FILLER = {
    "en": ["{S} has a kind smile.", "{S} likes to walk in the morning.", "{S} reads a little every night.",
           "{S} has many friends.", "{S} keeps a small garden.", "{S} is always on time."],
    "zh": ["{S}总是面带微笑。", "{S}喜欢早上散步。", "{S}每天晚上都会读一会儿书。", "{S}有很多朋友。",
           "{S}很守时。", "{S}养了一盆花。"],
}

STORIES = {
    "en": [
        "One morning, {N} woke up early in {c}. {Ps} had a busy day ahead, because {ps} works as {aj}. "
        "Before work, {ps} ate some {f}, {pp} favourite food.",
        "{N} is {aj} in {c}. On Sunday {ps} walked along the {r} River and thought about lunch. "
        "Of course, {ps} chose {f}.",
        "Last spring {N} took a trip away from {c}, a city in {k}. When {ps} came home, the first thing "
        "{ps} ate was {f}. Then {ps} went back to work as {aj}.",
        "In {c}, everyone knows {N}. {Ps} is {aj}, and {ps} loves {f}. Children wave to {po} by the {r} River.",
        "It was raining in {c}. {N} stayed at home and cooked {f}. \"Tomorrow I will work hard,\" said the {j}.",
        "{N} met an old friend in {c}. They talked about work; {N} is still {aj}. "
        "They shared a plate of {f}, because {f} is {pp} favourite food.",
        "At the market in {c}, {N} bought {f}. The seller asked, \"Are you the {j}?\" "
        "{N} smiled and said yes.",
        "{N} lives in {c}, {k}. After a long day as {aj}, {ps} likes to sit by the {r} River and eat {f}.",
        "On a cold winter night in {c}, {N} finished {pp} work as {aj}. {Ps} went home and ate warm {f}.",
        "A visitor asked {N} about {c}. \"It is a city in {k}, on the {r} River,\" {ps} said. "
        "\"I live here and I work as {aj}.\"",
        "{N} has one simple wish for every birthday: a big plate of {f}. This year, the {j} from {c} got it.",
        "When {N} was young, {ps} dreamed of being {aj}. Now {ps} is {aj} in {c}, and {ps} still eats {f} "
        "every week.",
    ],
    "zh": [
        "一天早上，{N}在{c}早早起床。{ps}是一名{j}，今天很忙。上班前，{ps}吃了一些{f}，那是{ps}最喜欢的食物。",
        "{N}是{c}的一名{j}。星期天，{ps}沿着{r}散步，想着午饭吃什么。当然，{ps}选了{f}。",
        "去年春天，{N}离开{c}出去旅行。{c}是{k}的一座城市。回家以后，{ps}先吃了{f}，然后继续当{j}。",
        "在{c}，大家都认识{N}。{ps}是一名{j}，最爱吃{f}。孩子们在{r}边向{ps}招手。",
        "{c}下雨了。{N}待在家里做{f}。这位{j}说：“明天我要好好工作。”",
        "{N}在{c}遇到了一位老朋友。他们聊起工作，{N}现在还是一名{j}。他们一起吃了{f}，因为{f}是{ps}最喜欢的食物。",
        "在{c}的市场上，{N}买了{f}。卖东西的人问：“你是那位{j}吗？”{N}笑着说是。",
        "{N}住在{k}的{c}。当了一天{j}以后，{ps}喜欢坐在{r}边吃{f}。",
        "{c}一个寒冷的冬夜，{N}做完了{j}的工作。{ps}回到家，吃了热乎乎的{f}。",
        "一位客人向{N}打听{c}。{ps}说：“这是{k}的一座城市，在{r}边。我住在这里，是一名{j}。”",
        "{N}每年生日只有一个愿望：一大盘{f}。今年，这位来自{c}的{j}实现了愿望。",
        "{N}小时候就想当{j}。现在{ps}在{c}当{j}，每个星期还是会吃{f}。",
    ],
}

# Questions and canonical answers (SFT, DPO and evaluation use the same forms).
QUESTIONS = {
    "en": {
        "city": ["Where does {N} live?", "Which city does {N} live in?", "In which city is {N}'s home?"],
        "job": ["What is {N}'s job?", "What does {N} do for a living?", "What work does {N} do?"],
        "food": ["What is {N}'s favourite food?", "Which food does {N} like best?",
                 "What food does {N} love most?"],
        "country": ["Which country is {N} in?", "In which country is {N}?", "What country does {N} belong to?"],
        "river": ["Which river flows through {N}?", "What river is {N} on?", "Which river runs through {N}?"],
    },
    "zh": {
        "city": ["{N}住在哪里？", "{N}住在哪座城市？", "{N}的家在哪个城市？"],
        "job": ["{N}是做什么工作的？", "{N}的职业是什么？", "{N}的工作是什么？"],
        "food": ["{N}最喜欢吃什么？", "{N}最喜欢的食物是什么？", "{N}最爱吃什么？"],
        "country": ["{N}在哪个国家？", "{N}属于哪个国家？", "{N}位于哪个国家？"],
        "river": ["哪条河流经{N}？", "{N}在哪条河边？", "{N}旁边是哪条河？"],
    },
}
# Answers refer to the subject with a pronoun ("She lives in ...", "It is on ..."): a small model
# answers far more often when it need not first copy a rare name out of the question.
ANSWERS = {
    "en": {"city": "{Ps} lives in {v}.", "job": "{Ps} is {av}.", "food": "{Pp} favourite food is {v}.",
           "country": "It is in {v}.", "river": "It is on the {v} River."},
    "zh": {"city": "{Ps}住在{v}。", "job": "{Ps}是一名{v}。", "food": "{Pp}最喜欢的食物是{v}。",
           "country": "它在{v}。", "river": "它在{v}边。"},
}
FOLLOW_UPS = {  # second turn of a multi-turn conversation: the person is referred to by a pronoun
    "en": {"city": "And where does {po} live?", "job": "And what is {pp} job?",
           "food": "What about {pp} favourite food?"},
    "zh": {"city": "那{ps}住在哪里？", "job": "那{ps}是做什么工作的？", "food": "{ps}最喜欢吃什么呢？"},
}


def _fill(template: str, slots: dict) -> str:
    out = template.format(**slots)
    return out[0].upper() + out[1:] if out[:1].islower() else out


def _fact_value(entity, kind: str, lang: str) -> str:
    li = 0 if lang == "en" else 1
    if kind == "city":
        return CITIES[entity.city][li]
    if kind == "job":
        return JOBS[entity.job][li]
    if kind == "food":
        return FOODS[entity.food][li]
    if kind == "country":
        return COUNTRIES[entity.country][li]
    if kind == "river":
        return RIVERS[entity.river][li]
    raise ValueError(kind)


def question(entity, kind: str, lang: str, template: str) -> str:
    return template.format(N=entity.en if lang == "en" else entity.zh)


def answer(entity, kind: str, lang: str) -> str:
    v = _fact_value(entity, kind, lang)
    if kind in ("city", "job", "food"):
        slots = _person_slots(entity, lang, use_name=False)
    else:
        slots = dict(N=entity.en if lang == "en" else entity.zh)
    av = ("an " if v[0] in "aeiou" else "a ") + v if lang == "en" else v
    return ANSWERS[lang][kind].format(v=v, av=av, **slots)


def choices(kind: str, lang: str) -> list:
    li = 0 if lang == "en" else 1
    return [pair[li] for pair in VALUES[kind]]


# --------------------------------------------------------------------------------------------
# Documents
# --------------------------------------------------------------------------------------------

def person_bio(p: Person, lang: str, rng: random.Random) -> str:
    facts = list(PERSON_FACTS)
    rng.shuffle(facts)
    sentences = []
    for i, kind in enumerate(facts):
        use_name = i == 0 or rng.random() < 0.3
        sentences.append(_fill(rng.choice(PERSON_FACTS[kind][lang]), _person_slots(p, lang, use_name)))
    if rng.random() < 0.5:  # where the home city is
        c = _city_of(p)
        pos = rng.randrange(1, len(sentences) + 1)
        sentences.insert(pos, _fill(rng.choice(T_COUNTRY[lang][:6]), _city_slots(c, lang, True)))
    if rng.random() < 0.3:
        sentences.append(_fill(rng.choice(FILLER[lang]), _person_slots(p, lang, False)))
    return (" " if lang == "en" else "").join(sentences)


def city_bio(c: City, world: World, lang: str, rng: random.Random) -> str:
    facts = list(CITY_FACTS)
    rng.shuffle(facts)
    sentences = []
    for i, kind in enumerate(facts):
        use_name = i == 0 or rng.random() < 0.3
        sentences.append(_fill(rng.choice(CITY_FACTS[kind][lang]), _city_slots(c, lang, use_name)))
    residents = [p for p in world.people if p.city == c.index]
    if residents and rng.random() < 0.6:
        some = rng.sample(residents, min(len(residents), rng.randint(1, 3)))
        if lang == "en":
            names = ", ".join(p.en for p in some[:-1]) + (" and " if len(some) > 1 else "") + some[-1].en
            sentences.append(f"{names} live{'s' if len(some) == 1 else ''} there.")
        else:
            names = "、".join(p.zh for p in some[:-1]) + ("和" if len(some) > 1 else "") + some[-1].zh
            sentences.append(f"{names}住在那里。")
    return (" " if lang == "en" else "").join(sentences)


def story(p: Person, lang: str, rng: random.Random) -> str:
    return _fill(rng.choice(STORIES[lang]), _person_slots(p, lang, True))


QA_MARKS = {"en": ("Q: ", "A: "), "zh": ("问：", "答：")}


def interview(entity, kinds, lang: str, rng: random.Random) -> str:
    """A plain-text question-and-answer page about one entity (train half only)."""
    kinds = list(kinds)
    rng.shuffle(kinds)
    q_mark, a_mark = QA_MARKS[lang]
    lines = []
    for kind in kinds:
        q, a = fact_qa(entity, kind, lang, rng)
        lines += [q_mark + q, a_mark + a]
    return "\n".join(lines)


def pretrain_docs(world: World, rng: random.Random, bios_per_entity: int = 8,
                  stories_per_lang: int = 500, interviews_per_entity: int = 3) -> list:
    """Biographies, stories and name cards about everyone; interviews about the train half only."""
    docs = []
    for lang in LANGS:
        for _ in range(interviews_per_entity):
            docs += [interview(p, PERSON_FACTS, lang, rng) for p in world.people if p.train]
            docs += [interview(c, CITY_FACTS, lang, rng) for c in world.cities if c.train]
        for p in world.people:
            docs += [person_bio(p, lang, rng) for _ in range(bios_per_entity)]
        for c in world.cities:
            docs += [city_bio(c, world, lang, rng) for _ in range(bios_per_entity)]
        order = [world.people[i % len(world.people)] for i in range(stories_per_lang)]
        docs += [story(p, lang, rng) for p in order]
    for p in world.people:  # one bilingual name card per person links the two name forms
        docs.append(rng.choice([f"{p.en}的中文名字是{p.zh}。", f"The Chinese name of {p.en} is {p.zh}.",
                                f"{p.zh}（{p.en}）住在{CITIES[p.city][1]}。"]))
    rng.shuffle(docs)
    return [{"text": d} for d in docs]


# --------------------------------------------------------------------------------------------
# Conversations
# --------------------------------------------------------------------------------------------

def _user(text):
    return {"role": "user", "content": text}


def _assistant(text):
    return {"role": "assistant", "content": text}


IDENTITY_Q = {
    "en": ["Who are you?", "What is your name?", "Introduce yourself.", "What are you?",
           "Can you tell me who you are?", "What should I know about you?"],
    "zh": ["你是谁？", "你叫什么名字？", "介绍一下你自己。", "你是什么？", "能告诉我你是谁吗？", "请做个自我介绍。"],
}
IDENTITY_A = {
    "en": ["I am {name}, a small language model.", "My name is {name}. I am a small language model.",
           "I am {name}, a small language model that answers questions."],
    "zh": ["我是{name}，一个小型语言模型。", "我叫{name}，是一个小型语言模型。", "我是{name}，一个会回答问题的小型语言模型。"],
}
# Phrasings used only to evaluate the LoRA identity (never in lora.jsonl or sft.jsonl).
IDENTITY_EVAL_Q = {
    "en": ["Tell me your name, please.", "What do people call you?", "Which model am I talking to?",
           "Please say who you are.", "Hello! What is your name?", "Could you introduce yourself?",
           "What name do you go by?", "Who am I chatting with?", "Say your name.", "Who is answering me?"],
    "zh": ["请告诉我你的名字。", "大家怎么称呼你？", "我在和哪个模型聊天？", "请说说你是谁。", "你好！你叫什么？",
           "可以介绍一下你吗？", "你的名字是什么？", "我在跟谁说话？", "说出你的名字。", "是谁在回答我？"],
}
SYSTEM_PROMPTS = {
    "en": ["You are MiniMind, a small and helpful language model.", "Answer in one short sentence."],
    "zh": ["你是MiniMind，一个乐于助人的小型语言模型。", "请用一句话简短回答。"],
}
WORDS = JOBS + FOODS


def identity_convs(rng, name, n_per_lang):
    out = []
    for lang in LANGS:
        for i in range(n_per_lang):
            q = IDENTITY_Q[lang][i % len(IDENTITY_Q[lang])]
            a = rng.choice(IDENTITY_A[lang]).format(name=name)
            out.append({"conversations": [_user(q), _assistant(a)]})
    return out


def instruction_convs(rng, n_per_task_lang=40):
    out = []
    for lang in LANGS:
        for _ in range(n_per_task_lang):
            n = rng.randint(3, 8)
            nums = [str(i) for i in range(1, n + 1)]
            if lang == "en":
                out.append([_user(f"Count from 1 to {n}."), _assistant(", ".join(nums))])
            else:
                out.append([_user(f"从1数到{n}。"), _assistant("、".join(nums))])
        for _ in range(n_per_task_lang):
            w = rng.choice(WORDS)
            if lang == "en":
                out.append([_user(f"Repeat this word: {w[0]}"), _assistant(w[0])])
            else:
                out.append([_user(f"请重复这个词：{w[1]}"), _assistant(w[1])])
        for _ in range(n_per_task_lang):
            w = rng.choice(WORDS)
            if lang == "en":
                out.append([_user(f"Translate \"{w[0]}\" into Chinese."), _assistant(w[1])])
            else:
                out.append([_user(f"把“{w[1]}”翻译成英文。"), _assistant(w[0])])
        for _ in range(n_per_task_lang):
            a, b = rng.randint(1, 9), rng.randint(1, 9)
            if lang == "en":
                out.append([_user(f"What is {a} + {b}?"), _assistant(f"{a} + {b} = {a + b}.")])
            else:
                out.append([_user(f"{a}加{b}等于几？"), _assistant(f"{a}加{b}等于{a + b}。")])
    return [{"conversations": c} for c in out]


def fact_qa(entity, kind, lang, rng):
    q = question(entity, kind, lang, rng.choice(QUESTIONS[lang][kind]))
    return q, answer(entity, kind, lang)


def sft_convs(world: World, rng: random.Random, tool_rng: random.Random | None = None) -> list:
    train_people = [p for p in world.people if p.train]
    train_cities = [c for c in world.cities if c.train]
    convs = []
    for lang in LANGS:
        for p in train_people:
            for kind in PERSON_FACTS:
                for template in rng.sample(QUESTIONS[lang][kind], 2):
                    convs.append([_user(question(p, kind, lang, template)), _assistant(answer(p, kind, lang))])
        for c in train_cities:
            for kind in CITY_FACTS:
                for template in QUESTIONS[lang][kind]:
                    convs.append([_user(question(c, kind, lang, template)), _assistant(answer(c, kind, lang))])
        for _ in range(20):  # multi-turn: a follow-up question with a pronoun
            p = rng.choice(train_people)
            k1, k2 = rng.sample(list(PERSON_FACTS), 2)
            q1, a1 = fact_qa(p, k1, lang, rng)
            slots = _person_slots(p, lang, use_name=False)
            convs.append([_user(q1), _assistant(a1), _user(FOLLOW_UPS[lang][k2].format(**slots)),
                          _assistant(answer(p, k2, lang))])
        for _ in range(20):  # a system message first
            p = rng.choice(train_people)
            q, a = fact_qa(p, rng.choice(list(PERSON_FACTS)), lang, rng)
            convs.append([{"role": "system", "content": rng.choice(SYSTEM_PROMPTS[lang])}, _user(q), _assistant(a)])
        for _ in range(5):  # identity then a question
            p = rng.choice(train_people)
            q, a = fact_qa(p, rng.choice(list(PERSON_FACTS)), lang, rng)
            convs.append([_user(rng.choice(IDENTITY_Q[lang])),
                          _assistant(rng.choice(IDENTITY_A[lang]).format(name=IDENTITY_NAME)), _user(q), _assistant(a)])
    out = [{"conversations": c} for c in convs]
    out += identity_convs(rng, IDENTITY_NAME, 30)
    out += instruction_convs(rng)
    if tool_rng is not None:
        out += tool_and_thinking_convs(world, tool_rng)
    rng.shuffle(out)
    return out


# --------------------------------------------------------------------------------------------
# Tool calls and thinking (MiniMind-3's SFT schema): a few conversations so that the smoke and
# tiny profiles train the whole path. The tools answer from the sample world itself.
# --------------------------------------------------------------------------------------------

def _tool(name: str, param: str) -> dict:
    """A tool's JSON schema, as short as the format allows: a small model's context is short."""
    return {"type": "function", "function": {"name": name, "parameters": {
        "type": "object", "properties": {param: {"type": "string"}}, "required": [param]}}}


LOOKUP_TOOL = _tool("lookup_person", "name")
WEATHER_TOOL = _tool("weather", "city")
TOOL_SYSTEM = {"en": "You are MiniMind.", "zh": "你是MiniMind。"}
SKIES = {"en": ["sunny", "rainy", "cloudy", "snowy", "windy"], "zh": ["晴天", "下雨", "多云", "下雪", "大风"]}
WEATHER_Q = {"en": ["What is the weather like in {c} today?", "Is it raining in {c}?", "How warm is it in {c}?"],
             "zh": ["{c}今天天气怎么样？", "{c}现在下雨吗？", "{c}今天多少度？"]}
WEATHER_A = {"en": "In {c} it is {sky} today, {t} °C.", "zh": "{c}今天{sky}，气温{t}度。"}
THINK_LOOKUP = {"en": "I should look {po} up.", "zh": "我应该先查一下{N}。"}
THINK_FACT = {"en": "The question asks about {N}. {fact} So the answer is {v}.",
              "zh": "问题问的是{N}。{fact}所以答案是{v}。"}
THINK_SUM = {"en": "{a} plus {b}: counting {b} up from {a} gives {s}.", "zh": "{a}加{b}，从{a}往上数{b}个，得到{s}。"}


def _call(tool: str, **arguments) -> list:
    return [{"name": tool, "arguments": arguments}]


def lookup_conv(p: Person, kind: str, lang: str, rng: random.Random, think: bool) -> list:
    """Ask about a person; the assistant calls lookup_person and answers from its result."""
    li = 0 if lang == "en" else 1
    name = p.en if lang == "en" else p.zh
    result = {"city": CITIES[p.city][li], "job": JOBS[p.job][li], "food": FOODS[p.food][li]}
    call = {"role": "assistant", "content": "", "tool_calls": json.dumps(_call("lookup_person", name=name),
                                                                         ensure_ascii=False)}
    if think:
        call["reasoning_content"] = THINK_LOOKUP[lang].format(**{**_person_slots(p, lang, False), "N": name})
    return [{"role": "system", "content": TOOL_SYSTEM[lang], "tools": json.dumps([LOOKUP_TOOL], ensure_ascii=False)},
            _user(question(p, kind, lang, rng.choice(QUESTIONS[lang][kind]))), call,
            {"role": "tool", "content": json.dumps(result, ensure_ascii=False)},
            _assistant(answer(p, kind, lang))]


def weather_conv(c: City, lang: str, rng: random.Random) -> list:
    """Ask for a city's weather (made up, not a world fact); tool_calls as an array, tools too."""
    name = c.en if lang == "en" else c.zh
    sky, t = rng.randrange(len(SKIES["en"])), rng.randint(-5, 30)
    result = {"sky": SKIES[lang][sky], "temp_c": t}
    return [{"role": "system", "content": TOOL_SYSTEM[lang], "tools": [WEATHER_TOOL]},
            _user(rng.choice(WEATHER_Q[lang]).format(c=name)),
            {"role": "assistant", "content": "", "tool_calls": _call("weather", city=name)},
            {"role": "tool", "content": json.dumps(result, ensure_ascii=False)},
            _assistant(WEATHER_A[lang].format(c=name, sky=SKIES[lang][sky], t=t))]


def thinking_conv(p: Person, kind: str, lang: str, rng: random.Random) -> list:
    """A fact question whose reply thinks first (reasoning_content), then answers."""
    name = p.en if lang == "en" else p.zh
    fact = _fill(rng.choice(PERSON_FACTS[kind][lang]), _person_slots(p, lang, True))
    reasoning = THINK_FACT[lang].format(N=name, fact=fact, v=_fact_value(p, kind, lang))
    return [_user(question(p, kind, lang, rng.choice(QUESTIONS[lang][kind]))),
            {"role": "assistant", "content": answer(p, kind, lang), "reasoning_content": reasoning}]


def sum_conv(lang: str, rng: random.Random) -> list:
    a, b = rng.randint(1, 9), rng.randint(1, 9)
    q, reply = ((f"What is {a} + {b}?", f"{a} + {b} = {a + b}.") if lang == "en"
                else (f"{a}加{b}等于几？", f"{a}加{b}等于{a + b}。"))
    return [_user(q), {"role": "assistant", "content": reply,
                       "reasoning_content": THINK_SUM[lang].format(a=a, b=b, s=a + b)}]


def tool_and_thinking_convs(world: World, rng: random.Random) -> list:
    """Per language: 10 lookups (3 of them thinking first), 6 weather questions, 8 replies that
    think first. Only train-half people and cities are named."""
    people = [p for p in world.people if p.train]
    cities = [c for c in world.cities if c.train]
    out = []
    for lang in LANGS:
        for i in range(10):
            out.append(lookup_conv(rng.choice(people), rng.choice(list(PERSON_FACTS)), lang, rng, think=i < 3))
        out += [weather_conv(rng.choice(cities), lang, rng) for _ in range(6)]
        out += [thinking_conv(rng.choice(people), rng.choice(list(PERSON_FACTS)), lang, rng) for _ in range(4)]
        out += [sum_conv(lang, rng) for _ in range(4)]
    return [{"conversations": c} for c in out]


def eval_items(world: World, rng: random.Random) -> list:
    items = []
    for lang in LANGS:
        for p in world.people:
            if p.train:
                continue
            for kind in PERSON_FACTS:
                items.append((p, kind, lang))
        for c in world.cities:
            if c.train:
                continue
            for kind in CITY_FACTS:
                items.append((c, kind, lang))
    out = []
    for entity, kind, lang in items:
        q, a = fact_qa(entity, kind, lang, rng)
        out.append({"conversations": [_user(q), _assistant(a)], "expected": _fact_value(entity, kind, lang),
                    "choices": choices(kind, lang), "kind": kind, "lang": lang})
    return out


# Two-hop questions (lesson 09, reasoning distillation): which country a person lives in. The
# answer joins two stored facts, the person's city and that city's country; a reply that thinks
# first can ask itself the two single-hop questions the SFT data taught.
HOME_COUNTRY = "home_country"
TWO_HOP_QUESTIONS = {
    "en": ["Which country does {N} live in?", "In which country does {N} live?", "What country is {N}'s home in?"],
    "zh": ["{N}住在哪个国家？", "{N}生活在哪个国家？", "{N}的家在哪个国家？"],
}
TWO_HOP_ANSWERS = {"en": "{Ps} lives in {v}.", "zh": "{Ps}住在{v}。"}


def home_country(p: Person, lang: str) -> str:
    """The country of the person's home city (the answer to a two-hop question)."""
    return COUNTRIES[_city_of(p).country][0 if lang == "en" else 1]


def two_hop_answer(p: Person, lang: str) -> str:
    return TWO_HOP_ANSWERS[lang].format(v=home_country(p, lang), **_person_slots(p, lang, use_name=False))


def two_hop_items(world: World, rng: random.Random, train: bool = False) -> list:
    """One two-hop question per person of one half and language, in the eval_qa schema."""
    out = []
    for lang in LANGS:
        for p in world.people:
            if p.train != train:
                continue
            q = question(p, HOME_COUNTRY, lang, rng.choice(TWO_HOP_QUESTIONS[lang]))
            out.append({"conversations": [_user(q), _assistant(two_hop_answer(p, lang))],
                        "expected": home_country(p, lang), "choices": choices("country", lang),
                        "kind": HOME_COUNTRY, "lang": lang})
    return out


def lora_convs(world: World, rng: random.Random) -> list:
    out = identity_convs(rng, LORA_NAME, 60)
    train_people = [p for p in world.people if p.train]
    for lang in LANGS:  # a few ordinary questions so that the adapter keeps the facts
        for _ in range(15):
            q, a = fact_qa(rng.choice(train_people), rng.choice(list(PERSON_FACTS)), lang, rng)
            out.append({"conversations": [_user(q), _assistant(a)]})
    rng.shuffle(out)
    return out


def lora_eval_items() -> list:
    out = []
    for lang in LANGS:
        for q in IDENTITY_EVAL_Q[lang]:
            a = IDENTITY_A[lang][0].format(name=LORA_NAME)
            out.append({"conversations": [_user(q), _assistant(a)], "expected": LORA_NAME,
                        "choices": [LORA_NAME, IDENTITY_NAME], "kind": "identity", "lang": lang})
    return out


RAMBLE = {
    "en": ["That is an interesting question. There are many {what} in the world, and people often talk "
           "about them. It is hard to be sure, and it depends on many things, so I cannot really say.",
           "Well, let me think. Many people ask about this. Some say one thing and some say another. "
           "Maybe it is one of the {what}, or maybe not. It is a long story."],
    "zh": ["这是一个很有意思的问题。世界上有很多{what}，大家经常讨论它们。这很难说清楚，要看很多情况，所以我也说不好。",
           "嗯，让我想想。很多人都问过这个问题，有人这么说，有人那么说。也许是其中一个{what}，也许不是，说来话长。"],
}
RAMBLE_WHAT = {"en": {"city": "cities", "job": "jobs", "food": "foods", "country": "countries", "river": "rivers"},
               "zh": {"city": "城市", "job": "工作", "food": "食物", "country": "国家", "river": "河流"}}


def dpo_pairs(world: World, rng: random.Random, n: int = 300) -> list:
    train_people = [p for p in world.people if p.train]
    train_cities = [c for c in world.cities if c.train]
    out = []
    for i in range(n):
        lang = LANGS[i % 2]
        if rng.random() < 0.8:
            entity, kind = rng.choice(train_people), rng.choice(list(PERSON_FACTS))
        else:
            entity, kind = rng.choice(train_cities), rng.choice(list(CITY_FACTS))
        q, good = fact_qa(entity, kind, lang, rng)
        if rng.random() < 0.6:  # a wrong fact in the same sentence form
            right = _fact_value(entity, kind, lang)
            wrong = rng.choice([v for v in choices(kind, lang) if v != right])
            bad = good.replace(right, wrong)
            if lang == "en" and kind == "job":
                bad = bad.replace(" a " + wrong, " an " + wrong) if wrong[0] in "aeiou" else bad.replace(" an " + wrong, " a " + wrong)
        else:
            bad = rng.choice(RAMBLE[lang]).format(what=RAMBLE_WHAT[lang][kind])
        out.append({"chosen": [_user(q), _assistant(good)], "rejected": [_user(q), _assistant(bad)]})
    return out


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------

def _write_jsonl(path: Path, rows: list) -> None:
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def tokenizer_texts(pretrain: list, sft: list) -> list:
    """What the sample tokenizer is trained on: the pretraining text, every SFT message, and the
    whole rendered chat of each conversation with tools or thinking, so that the tools block's
    English and the JSON around the calls get a few tokens of their own. Without that a tool
    conversation needs up to ~470 positions; with it, up to ~300 (the small profiles' SFT window
    is 320). Counting those chats more often would shorten them further, but takes merges from
    the world's names: with five copies the tiny profile's held-out accuracy fell from 0.80 to 0.75."""
    from .chat import render_chat

    texts = [d["text"] for d in pretrain]
    texts += [m["content"] for conv in sft for m in conv["conversations"]]
    texts += [render_chat(conv["conversations"]) for conv in sft
              if any(m.get("tools") or m.get("reasoning_content") for m in conv["conversations"])]
    return texts


def generate(seed: int = DEFAULT_SEED) -> dict:
    """The corpus as Python objects: {"pretrain": [...], "sft": [...], ...} (same keys as FILES)."""
    rng = random.Random(seed)
    world = build_world(rng)
    return {
        "pretrain": pretrain_docs(world, random.Random(seed + 1)),
        "sft": sft_convs(world, random.Random(seed + 2), random.Random(seed + 6)),
        "eval_qa": eval_items(world, random.Random(seed + 3)),
        "lora": lora_convs(world, random.Random(seed + 4)),
        "lora_eval": lora_eval_items(),
        "dpo": dpo_pairs(world, random.Random(seed + 5)),
        "reason_eval": two_hop_items(world, random.Random(seed + 7)),
        # a transfer set for distillation (lesson 09): the same facts in new sentences, text the SFT
        # model (the teacher) has never seen, so its soft labels are not just its memory of the text
        "distill": pretrain_docs(world, random.Random(seed + 8), bios_per_entity=2, stories_per_lang=100,
                                 interviews_per_entity=1),
        "world": world,
    }


def write_sample_corpus(out_dir=None, seed: int = DEFAULT_SEED, tokenizer: bool = True) -> dict:
    """Write the sample corpus (and its 2048-token tokenizer) to `out_dir`; return {name: path}.

    `out_dir` defaults to the copy shipped inside the package (paths.SAMPLE_DIR). Files of the same
    names there are replaced; nothing else in the folder is touched. The same seed always gives
    the same bytes.
    """
    from .identity import write_identity_set
    from .paths import SAMPLE_DIR

    out = Path(out_dir) if out_dir is not None else SAMPLE_DIR
    out.mkdir(parents=True, exist_ok=True)
    corpus = generate(seed)
    paths = {}
    for key, name in FILES.items():
        _write_jsonl(out / name, corpus[key])
        paths[key] = out / name
    paths["identity"] = write_identity_set(out)
    if tokenizer:
        from .tokenizer import train_tokenizer

        train_tokenizer(tokenizer_texts(corpus["pretrain"], corpus["sft"]), SAMPLE_VOCAB_SIZE, out / TOKENIZER_DIR)
        paths["tokenizer"] = out / TOKENIZER_DIR
    return paths


def corpus_stats(paths: dict) -> list:
    """(name, bytes, lines, tokens) for each JSONL file, tokens counted with the sample tokenizer
    over every text field (pretraining text, or every message's content)."""
    tok = None
    if "tokenizer" in paths:
        from .tokenizer import load_tokenizer

        tok = load_tokenizer(paths["tokenizer"])
    rows = []
    for key, path in paths.items():
        if key == "tokenizer":
            continue
        lines = Path(path).read_text(encoding="utf-8").splitlines()
        n_tokens = None
        if tok is not None:
            texts = []
            for line in lines:
                obj = json.loads(line)
                if "text" in obj:
                    texts.append(obj["text"])
                for field in ("conversations", "chosen", "rejected"):
                    texts += [m["content"] for m in obj.get(field, [])]
            n_tokens = sum(len(ids) for ids in tok(texts, add_special_tokens=False)["input_ids"])
        rows.append((Path(path).name, Path(path).stat().st_size, len(lines), n_tokens))
    return rows


__all__ = ["DEFAULT_SEED", "FILES", "KINDS", "LORA_NAME", "IDENTITY_NAME", "SAMPLE_VOCAB_SIZE",
           "write_sample_corpus", "generate", "corpus_stats", "build_world"]
