"""Varied real sentences for the correctness tests and the benchmarks: English, Chinese, code, mixed text."""

VARIED_TEXTS = [
    "The quick brown fox jumps over the lazy dog.",
    "A man is playing a guitar on the street corner.",
    "How do I reset my password if I no longer have access to my email?",
    "Photosynthesis converts light energy into chemical energy stored in glucose.",
    "The Treaty of Westphalia in 1648 ended the Thirty Years' War.",
    "She sells sea shells by the sea shore.",
    "Interest rates rose by 0.25 percentage points on Wednesday.",
    "What is the capital of Australia?",
    "Canberra is the capital city of Australia, not Sydney.",
    "Mix the flour, sugar and butter until the dough is smooth.",
    "The mitochondria is the powerhouse of the cell.",
    "Our quarterly revenue grew 12% year over year to $4.2 billion.",
    "Please don't forget to water the plants while I'm away!",
    "Neural networks learn representations by gradient descent.",
    "The patient presented with a persistent cough and mild fever.",
    "Shakespeare wrote Hamlet around the year 1600.",
    "It's raining cats and dogs outside — bring an umbrella.",
    "Error 404: the page you requested could not be found.",
    "The train to Edinburgh departs from platform 9 at 10:45.",
    "Climate change is driving more frequent extreme weather events.",
    "Vectors are normalised so that cosine similarity equals the dot product.",
    "Café au lait, naïve façade, résumé and jalapeño.",
    "Straße, Ärger, Öl and Übermut are German words.",
    "El perro corre en el parque con su dueño.",
    "Le chat dort sur le canapé depuis ce matin.",
    "Москва — столица России.",
    "Η Αθήνα είναι η πρωτεύουσα της Ελλάδας.",
    "我想在苹果公司工作。",
    "今天天气很好，我们去公园散步吧。",
    "机器学习是人工智能的一个分支。",
    "北京是中华人民共和国的首都。",
    "这本书的作者是一位著名的科学家。",
    "東京は日本の首都です。",
    "서울은 대한민국의 수도입니다.",
    "def add(a, b):\n    return a + b",
    "for i in range(10): print(i * i)",
    "SELECT name, email FROM users WHERE active = 1 ORDER BY name;",
    "const sum = (xs) => xs.reduce((a, b) => a + b, 0);",
    "fn main() { println!(\"Hello, world!\"); }",
    "#include <stdio.h>\nint main(void) { return 0; }",
    "git commit -m 'Fix off-by-one error in the tokenizer'",
    "x = np.linalg.norm(v, axis=1, keepdims=True)",
    "The function 计算相似度 returns a float between -1 and 1.",
    "Use pip install numpy 来安装 NumPy。",
    "Meeting at 3pm 在会议室 B, bring your laptop 💻.",
    "I love 🍕 and 🍣!",
    "Hello",
    "OK",
    "a",
    "42",
    "   leading and trailing spaces   ",
    "Tabs\tand\nnewlines\nin one text.",
    "ALL CAPS SENTENCE FOR EMPHASIS.",
    "e-mail addresses like jane.doe@example.com and URLs like https://example.org/path?q=1",
    "Retrieval-augmented generation grounds a language model's answers in documents it retrieves.",
    "In 2023, the James Webb Space Telescope observed galaxies formed less than 400 million years after the Big Bang, "
    "challenging models of early galaxy formation and prompting astronomers to revisit assumptions about star formation rates.",
]


def text_of_tokens(model, n: int, word: str = "river") -> str:
    """A text of exactly ``n`` tokens, the model's special tokens included: one word, repeated (for a
    tokenizer where each further repeat of ``word`` is one token, as "river" in XLM-R's and Qwen3's)."""
    from gguf_embed import Embedder

    with Embedder(model) as emb:
        extra = len(emb.tokens_of([f"{word} " * 10])[0]) - 10
        text = (f"{word} " * (n - extra)).strip()
        if len(emb.tokens_of([text])[0]) != n:
            raise ValueError(f"{word!r} repeated does not make {n} tokens with {model}")
    return text

