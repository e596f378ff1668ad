"""Word-level evaluation (issue 28): WordNet example sentences as gold word-in-context data,
and the linear probe on frozen token vectors. Synthetic WordNet-format files, tiny models."""

from __future__ import annotations

import json

import numpy as np
import pytest

from llm2vec_rag import LLM2Vec
from llm2vec_rag.cli import main
from llm2vec_rag.training.word_level import (
    best_threshold,
    fit_probe,
    target_vectors,
    word_level_probe,
)
from llm2vec_rag.training.wordnet import (
    WordExample,
    find_word,
    parse_data_line,
    pos_sample,
    read_wordnet_examples,
    split_by_lemma,
    wic_pairs,
)

# Two senses per lemma, two examples per sense; each part of speech in its own frame.
FRAMES = {
    "noun": ("n", ["the {w} sat on the table", "a big {w} was there"]),
    "verb": ("v", ["they {w} it quickly", "we will {w} the river"]),
    "adj": ("s", ["a very {w} dog", "the weather is {w} today"]),
    "adv": ("r", ["she answered {w}", "he {w} agreed"]),
}
LEMMAS = {pos: [f"{pos[:2]}{c}{d}" for c in "bcdfgk" for d in "mnprst"] for pos in FRAMES}


def write_wordnet(folder) -> str:
    """A WordNet-format folder (data.noun, data.verb, data.adj, data.adv) with 36 lemmas per
    part of speech, two synsets each, two quoted examples per synset."""
    folder.mkdir(exist_ok=True)
    offset = 1000
    for pos, (ss_type, frames) in FRAMES.items():
        lines = ["  1 This software and database is being provided to you, the LICENSEE\n"]
        for lemma in LEMMAS[pos]:
            for sense in range(2):
                examples = "; ".join(f'"{f.format(w=lemma)} {sense}"' for f in frames)
                lines.append(f"{offset:08d} 03 {ss_type} 02 {lemma} {sense} big_{lemma} 0 000 "
                             f"| sense {sense} of {lemma}; {examples}  \n")
                offset += 1
        (folder / f"data.{pos}").write_text("".join(lines), encoding="utf-8")
    return str(folder)


@pytest.fixture(scope="module")
def wordnet_dir(tmp_path_factory):
    return write_wordnet(tmp_path_factory.mktemp("wordnet"))


def test_parse_data_line_finds_the_word_in_its_examples():
    line = ('00001740 29 v 04 breathe 0 take_a_breath 0 respire 0 suspire 3 021 * 00005041 v '
            '0000 02 + 02 00 | draw air into the lungs; "I can breathe better when the air is '
            'clean"; "The patient is respiring"; "nothing here"  \n')
    out = parse_data_line(line)
    assert [(e.text[e.start:e.end], e.lemma, e.pos, e.synset) for e in out] == [
        ("breathe", "breathe", "verb", "verb:00001740"),
        ("respiring", "respire", "verb", "verb:00001740")]
    adj = parse_data_line('00014358 00 s 02 abounding 0 galore(ip) 0 001 & 00013887 a 0000 | '
                          'existing in abundance; "whiskey galore"  \n')
    assert [(e.lemma, e.pos, e.text[e.start:e.end]) for e in adj] == [("galore", "adj", "galore")]


def test_find_word_inflections_and_whole_words():
    assert find_word("He stopped the car", "stop", "verb") == (3, 10)
    assert find_word("two Ponies ran", "pony", "noun") == (4, 10)
    assert find_word("she ran home", "run", "verb", irregular=["ran"]) == (4, 7)
    assert find_word("a runner", "run", "verb") is None  # not a form of the word
    assert find_word("the happiest day", "happy", "adj") == (4, 12)


def test_parse_data_line_bad_line_names_where():
    with pytest.raises(ValueError, match=r"data\.noun:7: not a WordNet synset line"):
        parse_data_line("garbage without a gloss\n", where="data.noun:7")


def test_read_wordnet_examples_and_missing_folder(wordnet_dir, tmp_path):
    examples = read_wordnet_examples(wordnet_dir)
    assert len(examples) == 4 * 36 * 2 * 2  # every example holds its (single-word) lemma
    first = examples[0]
    assert first.text[first.start:first.end] == "nobm" and first.pos == "noun"
    with pytest.raises(FileNotFoundError, match="scripts/fetch_wordnet.sh"):
        read_wordnet_examples(str(tmp_path / "nowhere"))


def test_split_by_lemma_keeps_test_words_unseen(wordnet_dir):
    examples = read_wordnet_examples(wordnet_dir)
    train, test = split_by_lemma(examples, test_fraction=0.3)
    assert len(train) + len(test) == len(examples)
    assert not {e.lemma for e in train} & {e.lemma for e in test}
    assert 0.15 < len(test) / len(examples) < 0.45
    assert split_by_lemma(examples, 0.3) == (train, test)  # stable across calls


def test_pos_sample_is_balanced_and_seeded(wordnet_dir):
    examples = read_wordnet_examples(wordnet_dir)
    sample = pos_sample(examples, 80, seed=3)
    assert sorted(e.pos for e in sample).count("adv") == 20 and len(sample) == 80
    assert pos_sample(examples, 80, seed=3) == sample
    assert pos_sample(examples, 80, seed=4) != sample


def test_wic_pairs_same_lemma_and_balanced(wordnet_dir):
    pairs = wic_pairs(read_wordnet_examples(wordnet_dir), 100, seed=0)
    assert len(pairs) == 100 and sum(label for _, _, label in pairs) == 50
    for a, b, label in pairs:
        assert (a.lemma, a.pos) == (b.lemma, b.pos) and a.text != b.text
        assert label == (a.synset == b.synset)


def test_fit_probe_learns_a_linear_rule_and_not_noise():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 20)).astype(np.float32)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).astype(int)
    probe = fit_probe(x[:300], y[:300])
    assert (probe.predict(x[300:]) == y[300:]).mean() > 0.9
    noise = rng.integers(0, 2, size=400)
    chance = fit_probe(x[:300], noise[:300])
    assert (chance.predict(x[300:]) == noise[300:]).mean() < 0.7


def test_best_threshold_separates_scores():
    scores = np.array([0.1, 0.2, 0.3, 0.7, 0.8, 0.9])
    t = best_threshold(scores, np.array([0, 0, 0, 1, 1, 1]))
    assert 0.3 < t < 0.7


def test_target_vector_is_the_mean_of_the_words_tokens(tiny_encoder):
    text = "the weather is cold in winter"
    start = text.index("cold")
    word = WordExample(text, start, start + 4, "cold", "adj", "adj:1")
    whole = WordExample("winter", 0, 6, "winter", "noun", "noun:1")
    vecs = target_vectors(tiny_encoder, [word, whole])
    tokens, offsets = tiny_encoder.encode([text], output_value="token_embeddings",
                                          return_offsets=True)
    inside = (offsets[0][:, 0] < start + 4) & (offsets[0][:, 1] > start)
    # 1e-5: batch composition changes float summation order (the suite's invariance bound)
    np.testing.assert_allclose(vecs[0], tokens[0][inside].mean(axis=0), atol=1e-5)
    # A word that is the whole text: its vector is the text's (mean pooling).
    np.testing.assert_allclose(vecs[1], tiny_encoder.encode(["winter"])[0], atol=1e-5)


@pytest.mark.parametrize("task", ["pos", "wic"])
def test_word_level_probe_on_a_tiny_model(tiny_encoder, wordnet_dir, task):
    result = word_level_probe(tiny_encoder, task, wordnet_dir, train_size=64, test_size=24)
    assert result["task"] == task and result["layer"] == "last hidden state"
    assert 0 < result["train"] <= 64 and 0 < result["test"] <= 24
    assert 0.0 <= result["accuracy"] <= 1.0
    assert result["chance"] == (0.25 if task == "pos" else 0.5)
    assert word_level_probe(tiny_encoder, task, wordnet_dir, 64, 24) == result  # deterministic
    if task == "wic":
        assert 0.0 <= result["cosine_threshold_accuracy"] <= 1.0


def test_word_level_probe_rejects_unknown_task(tiny_encoder, wordnet_dir):
    with pytest.raises(ValueError, match="task must be one of"):
        word_level_probe(tiny_encoder, "ner", wordnet_dir)


def test_eval_word_level_cli(tiny_model_dir, wordnet_dir, capsys):
    assert main(["eval", "--word-level", "pos", "--wordnet-dir", wordnet_dir,
                 "--model", tiny_model_dir("llama"), "--train-size", "64",
                 "--test-size", "24"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    expected = word_level_probe(LLM2Vec.from_pretrained(tiny_model_dir("llama")), "pos",
                                wordnet_dir, 64, 24, batch_size=8)
    assert out["benchmark"] == "word-level" and out["accuracy"] == expected["accuracy"]
    assert out["bidirectional"] is True


def test_eval_word_level_cli_missing_data(tiny_model_dir, tmp_path, capsys):
    assert main(["eval", "--word-level", "wic", "--wordnet-dir", str(tmp_path),
                 "--model", tiny_model_dir("llama")]) != 0
    assert "scripts/fetch_wordnet.sh" in capsys.readouterr().err
