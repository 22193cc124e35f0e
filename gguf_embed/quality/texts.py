"""A built-in multilingual text set for tokenizer parity and quantisation quality checks.

Single-line texts (so they survive one-text-per-line files) in many scripts, plus the
cases tokenizers get wrong most often: decomposed accents, whitespace runs, long
numbers, emoji sequences, code and mixed scripts. ``texts()`` returns them all.
"""

from __future__ import annotations

import unicodedata

__all__ = ["texts", "BASE"]

BASE: dict[str, list[str]] = {
    "english": [
        "The quick brown fox jumps over the lazy dog.",
        "How do plants make energy from sunlight?",
        "Interest rates rose by a quarter of a percentage point on Wednesday.",
        "The patient presented with a persistent cough and a mild fever.",
        "Retrieval-augmented generation grounds answers in retrieved documents.",
        "Please don't forget to water the plants while I'm away!",
        "What's the difference between a virus and a bacterium?",
        "I'll be there at 10:45, won't I?",
    ],
    "chinese": [
        "今天天气很好，我们去公园散步吧。",
        "机器学习是人工智能的一个分支。",
        "北京是中华人民共和国的首都。",
        "向量检索通过比较嵌入的余弦相似度来查找相关文档。",
        "這本書的作者是一位著名的科學家。",
        "请问最近的地铁站怎么走？",
        "长江是中国最长的河流，全长约六千三百公里。",
        "他每天早上六点起床跑步。",
    ],
    "japanese": [
        "東京は日本の首都です。",
        "今日はとても暑いので、冷たい飲み物が欲しいです。",
        "私は毎朝コーヒーを飲みます。",
        "カタカナとひらがなと漢字が混ざった文章です。",
        "ｶﾀｶﾅの半角文字も時々使われます。",
        "新幹線で大阪まで二時間半かかります。",
    ],
    "korean": [
        "서울은 대한민국의 수도입니다.",
        "오늘 저녁에 무엇을 먹을까요?",
        "한국어는 한글이라는 고유한 문자를 사용합니다.",
        "기계 학습 모델은 많은 데이터가 필요합니다.",
        "부산에서 서울까지 기차로 세 시간 걸립니다.",
    ],
    "arabic": [
        "القاهرة هي عاصمة مصر وأكبر مدنها.",
        "أحب قراءة الكتب في المساء.",
        "يتعلم الطلاب اللغة العربية في المدرسة.",
        "ما هو الطقس اليوم في دبي؟",
        "الذكاء الاصطناعي يغير العالم بسرعة كبيرة.",
    ],
    "hindi": [
        "भारत की राजधानी नई दिल्ली है।",
        "मुझे हिंदी में किताबें पढ़ना पसंद है।",
        "आज मौसम बहुत अच्छा है।",
        "कृत्रिम बुद्धिमत्ता तेजी से बदल रही है।",
        "गंगा नदी भारत की सबसे पवित्र नदी मानी जाती है।",
    ],
    "russian": [
        "Москва — столица России.",
        "Я люблю читать книги по вечерам.",
        "Машинное обучение — это раздел искусственного интеллекта.",
        "Сколько стоит билет до Санкт-Петербурга?",
        "Ёжик в тумане — известный мультфильм.",
        "Поезд отправляется в 7:15 с третьей платформы.",
        "Пожалуйста, закройте дверь.",
    ],
    "european": [
        "Café au lait, naïve façade, résumé and jalapeño.",
        "Straße, Ärger, Öl und Übermut sind deutsche Wörter.",
        "El perro corre en el parque con su dueño.",
        "Le chat dort sur le canapé depuis ce matin.",
        "Η Αθήνα είναι η πρωτεύουσα της Ελλάδας.",
        "Żółć gęślą jaźń — polskie znaki diakrytyczne.",
        "İstanbul'da hava bugün çok güzel.",
        "Tiếng Việt có rất nhiều dấu thanh điệu.",
        "Þetta er íslenska með þ og ð.",
        "Příliš žluťoučký kůň úpěl ďábelské ódy.",
        "Ação, coração e informação são palavras portuguesas.",
        "Smörgåsbord och kräftskiva är svenska traditioner.",
        "Ñandú, pingüino y cigüeña son aves.",
        "Dziś jest piękny dzień w Kraków.",
    ],
    "other_scripts": [
        "שלום עולם, מה שלומך היום?",
        "สวัสดีครับ วันนี้อากาศดีมาก",
        "ভাষা আন্দোলন বাংলাদেশের ইতিহাসে গুরুত্বপূর্ণ।",
        "தமிழ் ஒரு பழமையான மொழி.",
        "ქართული ენა ძალიან ლამაზია.",
        "Հայերենը հնդեվրոպական լեզու է։",
        "ኢትዮጵያ በአፍሪካ ቀንድ ትገኛለች።",
        "Монгол хэл кирилл үсгээр бичигддэг.",
    ],
    "emoji": [
        "I love 🍕 and 🍣!",
        "Meeting at 3pm 💻📅 don't be late ⏰",
        "Family: 👨‍👩‍👧‍👦 and flags 🇯🇵 🇧🇷 🇪🇺",
        "Skin tones 👍🏽 👋🏿 and keycaps 1️⃣ #️⃣",
        "🔥🔥🔥 best day ever 🎉🎉",
    ],
    "code": [
        "def add(a, b): return a + b",
        "for (int i = 0; i < n; ++i) { sum += a[i] * b[i]; }",
        "SELECT name, email FROM users WHERE active = 1 ORDER BY name;",
        "const sum = (xs) => xs.reduce((a, b) => a + b, 0);",
        "fn main() { println!(\"Hello, world!\"); }",
        "x = np.linalg.norm(v, axis=1, keepdims=True)",
        "git commit -m 'Fix off-by-one error in the tokenizer'",
        "<div class=\"card\"><a href=\"/docs?q=1&lang=zh\">Docs</a></div>",
        "{\"id\": 42, \"tags\": [\"a\", \"b\"], \"ok\": true}",
        "if err != nil { return fmt.Errorf(\"read %s: %w\", path, err) }",
    ],
    "mixed": [
        "The function 计算相似度 returns a float between -1 and 1.",
        "Use pip install numpy 来安装 NumPy。",
        "東京 Tokyo 도쿄 Токио طوكيو टोक्यो",
        "Meeting 在会议室 B, bring your laptop 💻.",
        "iPhone 15 Pro の価格は 159,800 円です。",
        "COVID-19 백신 접종률은 85% 이상입니다.",
        "Мой email: ivan.petrov@example.ru, тел. +7 (495) 123-45-67",
    ],
    "numbers": [
        "3141592653589793238462643383279502884197",
        "Order #000123456789 shipped on 2024-03-15T08:30:00Z.",
        "Pi is about 3.14159265358979 and e about 2.718281828459045.",
        "1,234,567,890.12 USD vs 1.234.567.890,12 EUR",
        "Call 1-800-555-0199 or +44 20 7946 0958.",
        "٠١٢٣٤٥٦٧٨٩ and ०१२३४५६७८९ are digits too.",
    ],
    "whitespace": [
        "two  spaces   three    four",
        "tabs\tbetween\t\twords",
        "   leading spaces and trailing spaces   ",
        "non\u00a0breaking\u00a0spaces and\u2003em\u2003spaces",
        "ideographic\u3000space　中文",
        "a\u200bzero\u200bwidth\u200bspace",
    ],
    "short": ["a", "OK", "42", "é", "中", "🙂", "?!", "Hello"],
}


def _decomposed() -> list[str]:
    """Texts in NFD (as macOS and some PDF extractions produce) and literal combining marks."""
    literal = [
        "combining: e\u0301 vs \u00e9; n\u0303 vs \u00f1; a\u0308 vs \u00e4",
        "Cafe\u0301 de\u0301ja\u0300 vu, nai\u0308ve",
        "Vie\u0323\u0302t Nam",
        "\u1100\u1161\u11a8 Hangul jamo \u1112\u1161\u11ab\u1100\u1173\u11af",
        "A\u030a and \u212b (angstrom sign) and \u00c5",
        "\ufb01nance and \u2460 and \u00bd and \u2126",
    ]
    nfd = [
        unicodedata.normalize("NFD", t)
        for group in ("european", "korean")
        for t in BASE[group]
        if unicodedata.normalize("NFD", t) != t
    ]
    return literal + nfd


def _variants() -> list[str]:
    """Case, punctuation and whitespace variants of some base texts."""
    out = []
    for group in ("english", "european", "russian"):
        for t in BASE[group][:4]:
            out.append(t.upper())
            out.append("  " + t.replace(" ", "   ") + "  ")
    for t in BASE["chinese"][:4] + BASE["japanese"][:3]:
        out.append(t + " " + BASE["english"][0])
    for a, b in zip(BASE["arabic"], BASE["hindi"]):
        out.append(f"{a} {b}")
    for group in ("chinese", "japanese", "korean", "arabic", "hindi", "russian", "other_scripts"):
        for t in BASE[group][:6]:
            out.append(f"Translate to English: \"{t}\"")
    return out


def texts() -> list[str]:
    """Every text of the set, in a stable order, without duplicates."""
    seen, out = set(), []
    for t in [t for group in BASE.values() for t in group] + _decomposed() + _variants():
        if t not in seen and t.strip():
            seen.add(t)
            out.append(t)
    return out
