import json
import math

import pytest
import torch

from distilxlsr.cli import main
from distilxlsr.data.toy import make_toy_corpus
from distilxlsr.errors import UserError
from distilxlsr.evaluate.ctc import (
    ProbeConfig,
    probe_decode,
    train_probe,
)
from distilxlsr.evaluate.features import ModelFeatures, linear_cka, resolve_model
from distilxlsr.evaluate.harness import evaluate
from distilxlsr.evaluate.languages import load_language
from distilxlsr.evaluate.naming import provenance_line, split_label
from distilxlsr.evaluate.per import phone_error_rate
from distilxlsr.evaluate.recipe import evaluation_finetune
from distilxlsr.evaluate.task import extract_features as _extract
from distilxlsr.models.loading import load_teacher
from distilxlsr.provenance import PROVENANCE_FILE, Provenance, write_provenance


@pytest.fixture(scope="module")
def eval_corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    for lang, seed in [("aa", 1), ("bb", 2)]:
        make_toy_corpus(root, lang, "train", num_utterances=16, seed=seed)
        make_toy_corpus(root, lang, "test", num_utterances=5, seed=seed + 100)
    return root


def test_probe_learns(eval_corpus):
    data = load_language("aa", eval_corpus / "aa")
    features = ModelFeatures(resolve_model("logmel"), frame_stride=80)
    train, test = _extract(features, data.train.waves), _extract(features, data.test.waves)
    labels = [data.encode(p) for p in data.train.phones]

    def per(steps):
        config = ProbeConfig(
            optimizer="adam", steps=steps, lr=2e-2, batch_utterances=8, standardise=False
        )
        head, _ = train_probe(train, labels, len(data.vocab), config)
        return phone_error_rate(
            data.test.phones, [data.decode(h) for h in probe_decode(head, test)]
        )

    # An untrained probe inserts phones everywhere (PER about 10). 100 steps reach 0.70; a probe
    # that is trained but broken (say, gradients never zeroed: 1.49) must not pass.
    untrained, trained = per(0), per(100)
    assert untrained >= 0.95
    assert trained < 0.85, (trained, untrained)
    # The default, converged probe learns too (0.83 here: 8 toy utterances, not speech).
    head, info = train_probe(train, labels, len(data.vocab), ProbeConfig())
    converged = phone_error_rate(
        data.test.phones, [data.decode(h) for h in probe_decode(head, test)]
    )
    assert info["converged"] and converged < 0.9, (converged, trained)


@pytest.mark.slow
def test_evaluate_writes_reports_and_is_deterministic(tmp_path, eval_corpus, teacher_dir):
    models = [str(teacher_dir), "logmel", f"untrained:{teacher_dir}"]
    probe = ProbeConfig(steps=30)
    a = evaluate(
        models, str(eval_corpus), str(tmp_path / "a"), seeds=[0, 1], probe=probe, similarity=True
    )
    b = evaluate(models, str(eval_corpus), str(tmp_path / "b"), seeds=[0, 1], probe=probe)
    assert [m["per"] for m in a["models"]] == [m["per"] for m in b["models"]]
    assert a["comparisons"] == b["comparisons"]  # the bootstrap is seeded
    assert [m["per_ci"] for m in a["models"]] == [m["per_ci"] for m in b["models"]]
    saved = json.loads((tmp_path / "a" / "results.json").read_text())
    assert saved["mode"] == "probe" and saved["languages"] == ["aa", "bb"]
    names = [m["name"] for m in saved["models"]]
    assert names == [teacher_dir.name, "logmel", f"untrained:{teacher_dir.name}"]
    for model in saved["models"]:
        assert set(model["per"]) == {"aa", "bb"} and set(model["per_std"]) == {"aa", "bb"}
        assert {"params", "per_mean", "per_mean_std", "rel_gap", "train_per"} <= set(model)
        detail = model["details"]["aa"]
        assert detail["phones"] > 0 and detail["steps"] == 30 and len(detail["per"]) == 2
    assert saved["models"][0]["rel_gap"] == 0.0 and saved["models"][0]["abs_gap"] == 0.0
    report = (tmp_path / "a" / "results.md").read_text()
    # First what each network heard (log-mel learns nothing: no line), then the language table.
    assert report.startswith(
        "What each model heard and which phone labels trained it (a student's record includes "
        "its teacher's):\n\n"
        f"- **{teacher_dir.name}**: not recorded\n"
        f"- **untrained:{teacher_dir.name}**: nothing: random weights of its architecture\n\n"
    )
    table = next(p for p in report.split("\n\n") if p.startswith("| language |")).splitlines()
    assert (
        table[0].startswith("| language |")
        and sum(line.startswith("| aa |") for line in table) == 1
    )
    assert "| tier (languages) | model | PER [95% CI] |" in report and "Holm p" in report
    assert "| aa | test |  | 5 |" in report  # test size: split, no tier, 5 utterances
    assert (tmp_path / "a" / "per.png").stat().st_size > 1000


def _with_tiers(root, tiers: dict) -> None:
    """Write custom["tier"] into each language's test cuts; the first cut gets none (the first
    cut that has one decides) and the last another (which must not)."""
    from lhotse import CutSet

    for lang, tier in tiers.items():
        path = root / lang / "cuts_test.jsonl.gz"
        cuts = list(CutSet.from_file(path))
        for k, cut in enumerate(cuts):
            cut.custom = None if k == 0 else {"tier": tier if k < len(cuts) - 1 else "other"}
        CutSet.from_cuts(cuts).to_file(path)


def test_statistics_with_tiers(tmp_path, eval_corpus, teacher_dir):
    import shutil

    root = tmp_path / "corpus"
    shutil.copytree(eval_corpus, root)
    make_toy_corpus(root, "cc", "train", num_utterances=16, seed=3)
    make_toy_corpus(root, "cc", "test", num_utterances=4, seed=103)  # no tier
    _with_tiers(root, {"aa": "unheard", "bb": "heard"})
    models = [f"teacher={teacher_dir}", "logmel", f"untrained:{teacher_dir}"]
    results = evaluate(
        models, str(root), str(tmp_path / "out"), seeds=[0, 1], probe=ProbeConfig(steps=5)
    )
    assert results["tiers"] == {"heard": ["bb"], "unheard": ["aa"]}
    assert list(results["tiers"]) == ["heard", "unheard"]  # the corpus's order, not by name
    teacher, logmel, untrained = results["models"]
    assert [m["name"] for m in results["models"]] == [
        "teacher",
        "logmel",
        f"untrained:{teacher_dir.name}",
    ]
    for model in results["models"]:
        assert set(model["tiers"]) == {"heard", "unheard", "all"}
        assert model["tiers"]["heard"]["per"] == pytest.approx(model["per"]["bb"])
        assert model["tiers"]["heard"]["worst"] == ["bb", pytest.approx(model["per"]["bb"])]
        assert model["tiers"]["all"]["languages"] == 3
        assert model["tiers"]["all"]["per"] == pytest.approx(model["per_mean"])
        worst = max(model["per"], key=model["per"].get)
        assert model["tiers"]["all"]["worst"][0] == worst
        assert set(model["per_ci_by_lang"]) == {"aa", "bb", "cc"}
        lo, hi = model["per_ci"]
        assert lo <= hi and model["per_ci"] == model["tiers"]["all"]["per_ci"]
        # Per-utterance records: PER is their total edits over their total phones, per seed.
        records = model["details"]["cc"]["utterances"]
        assert len(records) == 4 and all(len(r["edits"]) == 2 for r in records)
        phones = sum(r["phones"] for r in records)
        assert phones == model["details"]["cc"]["phones"]
        for k in range(2):
            assert sum(r["edits"][k] for r in records) / phones == pytest.approx(
                model["details"]["cc"]["per"][k]
            )
        assert model["abs_gap"] == pytest.approx(model["per_mean"] - teacher["per_mean"])
    # Gain retained: only the untrained network, measured from logmel.
    assert results["floor"] == "logmel"
    assert "gain_retained" not in teacher and "gain_retained" not in logmel
    for lang in ("aa", "bb", "cc"):
        gain = logmel["per"][lang] - teacher["per"][lang]
        expected = (logmel["per"][lang] - untrained["per"][lang]) / gain if gain > 0 else None
        assert untrained["gain_retained_by_lang"][lang] == pytest.approx(expected)
    gain = logmel["per_mean"] - teacher["per_mean"]
    expected = (logmel["per_mean"] - untrained["per_mean"]) / gain if gain > 0 else None
    assert untrained["gain_retained"]["all"] == pytest.approx(expected)
    assert set(untrained["gain_retained_ci"]) == {"heard", "unheard", "all"}
    assert [(c["a"], c["b"]) for c in results["comparisons"]] == [
        ("logmel", "teacher"),
        (untrained["name"], "teacher"),
    ]
    report = (tmp_path / "out" / "results.md").read_text()
    assert "| heard (1) | teacher |" in report and "gain retained [95% CI]" in report
    assert "| bb | test | heard | 5 |" in report and "| cc | test |  | 4 |" in report
    _with_tiers(root, {"cc": "all"})
    with pytest.raises(UserError, match="tier 'all' .* is reserved"):
        evaluate(models, str(root), str(tmp_path / "x"))
    assert not (tmp_path / "x").exists()  # refused before any training


def test_labels_and_paired_comparisons(tmp_path, eval_corpus, teacher_dir):
    results = evaluate(
        ["one=logmel", "two=logmel", f"t={teacher_dir}"],
        str(eval_corpus / "aa"),
        str(tmp_path / "out"),
        probe=ProbeConfig(steps=5),
        compare=["two:one", ("t", "two")],
        bootstrap=200,
    )
    one, two, _ = results["models"]
    assert (one["name"], two["name"]) == ("one", "two") and one["per"] == two["per"]
    same, other = results["comparisons"]
    # The same model twice, scored on paired resamples: a difference of exactly 0.
    assert (same["a"], same["b"], same["diff"], same["ci"], same["p"]) == (
        "two",
        "one",
        0.0,
        [0.0, 0.0],
        1.0,
    )
    assert (other["a"], other["b"]) == ("t", "two")
    assert results["bootstrap"]["resamples"] == 200
    # Holm over two tests: the smaller p doubled (same's p is 1).
    assert other["p"] >= 1 / 200 and other["p_holm"] == min(1.0, 2 * other["p"])
    assert same["p_holm"] == 1.0
    with pytest.raises(UserError, match="label 'x' is given twice"):
        evaluate(["x=logmel", f"x={teacher_dir}"], str(eval_corpus), str(tmp_path / "e"))
    with pytest.raises(UserError, match="--compare 'one:nope' must be A:B"):
        evaluate(
            ["one=logmel", "two=logmel"],
            str(eval_corpus),
            str(tmp_path / "e"),
            compare=["one:nope"],
        )
    with pytest.raises(UserError, match="compares a model with itself"):
        evaluate(
            ["one=logmel", "two=logmel"],
            str(eval_corpus),
            str(tmp_path / "e"),
            compare=[("one", "one")],
        )
    with pytest.raises(UserError, match="at least 100"):
        evaluate(["logmel"], str(eval_corpus), str(tmp_path / "e"), bootstrap=10)
    assert not (tmp_path / "e").exists()


def test_provenance_lines_say_what_each_model_heard(tmp_path):
    """A teacher's record, an untrained network, log-mel and a model without a record; a
    damaged record is one error naming the file, raised before any model loads."""
    teacher = tmp_path / "teacher"
    teacher.mkdir()
    write_provenance(teacher, Provenance(heard={"en": "english", "es": "label"}, labels=["es"]))
    line = provenance_line(resolve_model(str(teacher)))
    assert line == "heard en (english), es (label); labels: phone labels of es (label)"
    write_provenance(teacher, Provenance(heard={"en": "english"}, tier_protocol=False))
    assert provenance_line(resolve_model(str(teacher))) == (
        "heard en (english); labels: none; tier protocol off (a labelled upper bound)"
    )
    assert provenance_line(resolve_model(f"untrained:{teacher}")).startswith("nothing")
    assert provenance_line(resolve_model("logmel")) is None
    assert provenance_line(resolve_model(str(tmp_path))) == "not recorded"
    (teacher / PROVENANCE_FILE).write_text("[]")
    with pytest.raises(UserError, match="provenance.json' is not a provenance record"):
        evaluate([str(teacher)], str(tmp_path / "no-corpus-needed"), str(tmp_path / "out"))


def test_split_label():
    assert split_label("teacher=assets/teacher") == ("teacher", "assets/teacher")
    assert split_label("base:v2=logmel") == ("base:v2", "logmel")
    assert split_label("logmel") == (None, "logmel")
    assert split_label("runs/lr=1e-4") == (None, "runs/lr=1e-4")  # '/' is no label
    assert split_label("name=") == (None, "name=")  # no model after it
    assert split_label("a b=x") == (None, "a b=x")


def test_split_choice(tmp_path, eval_corpus, capsys):
    import shutil

    root = tmp_path / "corpus"
    shutil.copytree(eval_corpus, root)
    make_toy_corpus(root, "aa", "dev", num_utterances=3, seed=7)
    results = evaluate(
        ["logmel"], str(root), str(tmp_path / "dev"), split="dev", probe=ProbeConfig(steps=3)
    )
    assert "skipping bb: no dev split" in capsys.readouterr().out
    assert results["languages"] == ["aa"] and results["split"] == "dev"
    detail = results["models"][0]["details"]["aa"]
    assert detail["test_split"] == "dev" and len(detail["utterances"]) == 3
    assert all("-dev-" in u["id"] for u in detail["utterances"])
    default = evaluate(["logmel"], str(root), str(tmp_path / "t"), probe=ProbeConfig(steps=3))
    assert default["split"] == "test" and default["test_splits"] == {"aa": "test", "bb": "test"}
    with pytest.raises(UserError, match="language 'bb' has no dev split"):
        evaluate(["logmel"], str(root), str(tmp_path / "x"), split="dev", langs=["bb"])
    with pytest.raises(UserError, match="--split 'train' must be one of test, valid, dev"):
        evaluate(["logmel"], str(root), str(tmp_path / "x"), split="train")


def test_similarity_of_a_student_with_its_teacher(tmp_path, eval_corpus, teacher_dir):
    student = tmp_path / "student"
    assert (
        main(
            [
                "init-student",
                "--teacher",
                str(teacher_dir),
                "--layers",
                "jump:2",
                "--out",
                str(student),
            ]
        )
        == 0
    )
    results = evaluate(
        [str(teacher_dir), str(student)],
        str(eval_corpus),
        str(tmp_path / "e"),
        langs=["bb"],
        probe=ProbeConfig(steps=5),
        similarity=True,
    )
    table = results["similarity"]["bb"]["student"]
    assert table["targets"] == [2, 4] and all(0.0 <= v <= 1.0 + 1e-9 for v in table["cka"])
    # The top student layer is initialised as the top teacher layer: similar, not identical.
    assert table["cka"][1] > 0.3
    assert (tmp_path / "e" / "similarity.png").is_file()


def test_a_student_identical_to_its_teacher_has_cka_1_at_every_paired_layer(
    tmp_path, eval_corpus, teacher_dir
):
    """init-student jump:1 copies every layer: student layer i is teacher layer i, so its
    representations are the teacher's and each pair's linear CKA is 1."""
    student = tmp_path / "student"
    args = ["init-student", "--teacher", str(teacher_dir), "--layers", "jump:1"]
    assert main([*args, "--out", str(student)]) == 0
    results = evaluate(
        [str(teacher_dir), str(student)],
        str(eval_corpus),
        str(tmp_path / "e"),
        langs=["bb"],
        probe=ProbeConfig(steps=1),
        similarity=True,
    )
    assert results["similarity"]["bb"]["student"] == {"targets": [1, 2, 3, 4], "cka": [1.0] * 4}


def test_linear_cka():
    torch.manual_seed(0)
    x = torch.randn(500, 8)
    assert linear_cka(x, x) == pytest.approx(1.0)
    assert linear_cka(x, 3 * x @ torch.linalg.qr(torch.randn(8, 8))[0]) == pytest.approx(1.0)
    assert linear_cka(x, torch.randn(500, 8)) < 0.2


def _recipe(frozen: int, full: int):
    recipe = evaluation_finetune()
    recipe.frozen.steps, recipe.full.steps = frozen, full
    recipe.train.batch_seconds = 6.0
    recipe.loader.max_seconds = 6.0
    return recipe


def test_finetune_mode_runs_the_finetune_job_per_language_and_seed(
    tmp_path, eval_corpus, teacher_dir
):
    out = tmp_path / "ft"
    args = ([str(teacher_dir)], str(eval_corpus), str(out))
    results = evaluate(*args, mode="finetune", langs=["aa"], finetune_config=_recipe(2, 2))
    assert math.isfinite(results["models"][0]["per"]["aa"])
    assert results["models"][0]["details"]["aa"]["steps"] == 4
    # one run directory per model, language and seed, with a phone recogniser in it
    run = out / "finetune-runs" / teacher_dir.name / "aa" / "seed-0"
    vocab = json.loads((run / "model" / "vocab.json").read_text())
    assert list(vocab)[:2] == ["<pad>", "<unk>"] and "|" not in vocab
    with pytest.raises(UserError, match="finetune.targets=chars: .* set targets=chars"):
        recipe = _recipe(1, 1)
        recipe.targets = "chars"
        evaluate(*args, mode="finetune", finetune_config=recipe)


def test_errors(tmp_path, eval_corpus, teacher_dir):
    make_toy_corpus(tmp_path, "cc", "train", num_utterances=2)
    with pytest.raises(
        UserError, match="no language with a train split and a test, valid or dev split"
    ):
        evaluate([str(teacher_dir)], str(tmp_path), str(tmp_path / "o"))
    with pytest.raises(UserError, match="language 'zz'"):
        evaluate([str(teacher_dir)], str(eval_corpus), str(tmp_path / "o"), langs=["zz"])
    with pytest.raises(UserError, match="does not exist"):
        evaluate(["logmel", str(tmp_path / "missing")], str(eval_corpus), str(tmp_path / "o"))
    assert not (tmp_path / "o" / "results.json").exists()
    with pytest.raises(UserError, match="logmel has no network"):
        evaluate(["logmel"], str(eval_corpus), str(tmp_path / "o"), mode="finetune")


def test_evaluate_reads_a_prepared_fairseq_directory(tmp_path):
    from distilxlsr.data.prepare import PrepareOptions, prepare_fairseq
    from tests.helpers import make_fairseq

    out = tmp_path / "manifests"
    prepare_fairseq(
        make_fairseq(tmp_path / "sw"),
        out,
        options=PrepareOptions(max_reject_share=0.5, progress=False),
    )
    results = evaluate(["logmel"], str(out / "sw"), str(tmp_path / "e"), probe=ProbeConfig(steps=3))
    assert results["languages"] == ["sw"]
    detail = results["models"][0]["details"]["sw"]
    assert detail["test_split"] == "valid" and detail["phones"] == 4


def test_two_models_with_one_name_keep_their_own_rows(tmp_path, eval_corpus, teacher_dir):
    from distilxlsr.models.loading import count_parameters, load_teacher
    from distilxlsr.models.student import save_student

    teacher = load_teacher(str(teacher_dir))
    paths = []
    for where, seed in (("a", 1), ("b", 2)):  # two different students, both called `student`
        from distilxlsr.models.student import init_student

        student, layer_map = init_student(teacher, "random:2", seed=seed)
        path = tmp_path / where / "student"
        save_student(student, layer_map, "t", count_parameters(teacher), path)
        paths.append(str(path))
    results = evaluate(
        paths, str(eval_corpus / "aa"), str(tmp_path / "out"), probe=ProbeConfig(steps=5)
    )
    names = [m["name"] for m in results["models"]]
    assert names == paths
    alone = evaluate(
        paths[1:], str(eval_corpus / "aa"), str(tmp_path / "alone"), probe=ProbeConfig(steps=5)
    )
    assert results["models"][1]["per"] == alone["models"][0]["per"]
    assert results["models"][0]["per"] != results["models"][1]["per"]
    # Labelled, the same two keep their own rows under their labels.
    labelled = evaluate(
        [f"first={paths[0]}", f"second={paths[1]}"],
        str(eval_corpus / "aa"),
        str(tmp_path / "labelled"),
        probe=ProbeConfig(steps=5),
    )
    assert [m["name"] for m in labelled["models"]] == ["first", "second"]
    assert [m["per"] for m in labelled["models"]] == [m["per"] for m in results["models"]]
    with pytest.raises(UserError, match="given twice"):
        evaluate([paths[0], paths[0]], str(eval_corpus / "aa"), str(tmp_path / "x"))


def test_a_language_without_a_test_split_is_skipped(tmp_path, eval_corpus, capsys):
    import shutil

    root = tmp_path / "corpus"
    shutil.copytree(eval_corpus, root)
    make_toy_corpus(root, "en", "train", num_utterances=4, seed=9)  # distillation data only
    results = evaluate(["logmel"], str(root), str(tmp_path / "out"), probe=ProbeConfig(steps=5))
    assert results["languages"] == ["aa", "bb"]
    assert "skipping en: no test, valid or dev split" in capsys.readouterr().out
    with pytest.raises(UserError, match="'en' has no test, valid or dev split"):
        evaluate(["logmel"], str(root), str(tmp_path / "o2"), langs=["en"])


def _finetuned(tmp_path, teacher_dir, eval_corpus, frozen: int, full: int):
    from distilxlsr.asr.finetune import finetune
    from distilxlsr.asr.recipe import FinetuneConfig
    from distilxlsr.asr.recogniser import Recogniser

    config = FinetuneConfig.of(
        _recipe(frozen, full),
        model=str(teacher_dir),
        data=str(eval_corpus / "aa"),
        out=str(tmp_path / f"run-{frozen}-{full}"),
        eval_split="",
    )
    return Recogniser(finetune(config), use_lm=False).model


def _changed(before: dict, model, prefix: str) -> list[bool]:
    after = model.base_model.state_dict()
    return [not torch.equal(before[k], after[k]) for k in before if k.startswith(prefix)]


def test_finetuning_keeps_the_cnn_frozen_and_trains_head_then_body(
    tmp_path, teacher_dir, eval_corpus
):
    pretrained = load_teacher(str(teacher_dir)).state_dict()
    # Step 1 trains the head only, step 2 the transformer too.
    model = _finetuned(tmp_path, teacher_dir, eval_corpus, frozen=1, full=1)
    cnn = _changed(pretrained, model, "feature_extractor.")
    assert cnn and not any(cnn), "the CNN feature encoder must stay frozen"
    assert all(_changed(pretrained, model, "encoder.layers.0.attention."))
    # Head-only throughout: the transformer keeps its pretrained weights, the head learns.
    model = _finetuned(tmp_path, teacher_dir, eval_corpus, frozen=2, full=0)
    assert not any(_changed(pretrained, model, "encoder."))
    assert not any(_changed(pretrained, model, "feature_projection."))
    phones = load_language("aa", eval_corpus / "aa").vocab  # blank first, as <pad> is
    assert model.lm_head.weight.shape[0] == len(phones) + 1  # and <unk>


@pytest.mark.slow
def test_languages_in_worker_processes_give_the_same_results(tmp_path, eval_corpus, teacher_dir):
    """A worker runs one torch thread, so its results are those of a one-thread run in the
    parent (float sums in another order, over the probe's many iterations, move a PER by a few
    hundredths of a point; CI's two threads showed it)."""
    models = [f"t={teacher_dir}", "logmel"]
    probe = ProbeConfig(steps=5)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        one = evaluate(
            models, str(eval_corpus), str(tmp_path / "one"), probe=probe, similarity=True
        )
    finally:
        torch.set_num_threads(threads)
    two = evaluate(
        models, str(eval_corpus), str(tmp_path / "two"), probe=probe, similarity=True, jobs=2
    )
    for a, b in zip(one["models"], two["models"], strict=True):
        assert a["per"] == b["per"]
        for lang in one["languages"]:
            assert a["details"][lang]["utterances"] == b["details"][lang]["utterances"]
    assert one.get("similarity") == two.get("similarity")
    with pytest.raises(UserError, match="--jobs"):
        evaluate(models, str(eval_corpus), str(tmp_path / "bad"), probe=probe, jobs=0)


def test_an_evaluation_redoes_only_what_is_missing_or_changed(
    tmp_path, eval_corpus, teacher_dir, capsys
):
    out = tmp_path / "e"
    first = evaluate(["logmel"], str(eval_corpus), str(out), probe=ProbeConfig(steps=5))
    (out / "languages" / "bb.json").unlink()  # as if interrupted after the first language
    capsys.readouterr()
    again = evaluate(["logmel"], str(eval_corpus), str(out), probe=ProbeConfig(steps=5))
    assert "reusing 1 of 2 (model, language) results" in capsys.readouterr().out
    assert again["models"][0]["per"] == first["models"][0]["per"]
    assert (out / "languages" / "bb.json").is_file()
    # another setting is evaluated afresh
    evaluate(["logmel"], str(eval_corpus), str(out), probe=ProbeConfig(steps=6))
    assert "reusing" not in capsys.readouterr().out
    # a model added: only it runs; the stored one is reused in every language (log-mel's
    # frames follow the networks' stride, so the teacher comes first)
    out = tmp_path / "added"
    alone = evaluate([f"t={teacher_dir}"], str(eval_corpus), str(out), probe=ProbeConfig(steps=6))
    capsys.readouterr()
    both = evaluate(
        [f"t={teacher_dir}", "logmel"], str(eval_corpus), str(out), probe=ProbeConfig(steps=6)
    )
    assert "reusing 2 of 4 (model, language) results" in capsys.readouterr().out
    assert both["models"][0]["per"] == alone["models"][0]["per"]
    # the floor's own setting changes the floor's results only
    evaluate(
        [f"t={teacher_dir}", "logmel"],
        str(eval_corpus),
        str(out),
        probe=ProbeConfig(steps=6),
        floor_probe=ProbeConfig(steps=7),
    )
    assert "reusing 2 of 4 (model, language) results" in capsys.readouterr().out
    stored = json.loads((out / "languages" / "aa.json").read_text())
    assert set(stored["models"]) == {"t", "logmel"}
    # a similarity table needs every model's features: with one model changed, all run again
    evaluate(
        [f"t={teacher_dir}", "logmel"],
        str(eval_corpus),
        str(out),
        probe=ProbeConfig(steps=6),
        similarity=True,
    )
    assert "reusing" not in capsys.readouterr().out
    again = evaluate(
        [f"t={teacher_dir}", "logmel"],
        str(eval_corpus),
        str(out),
        probe=ProbeConfig(steps=6),
        similarity=True,
    )
    assert "reusing 4 of 4" in capsys.readouterr().out
    assert again["models"][0]["per"] == both["models"][0]["per"]


def test_results_stored_by_the_previous_version_are_adopted_but_the_floor(
    tmp_path, eval_corpus, teacher_dir, capsys
):
    """Before results were kept per model, OUT/languages/<lang>.json held one fingerprint over
    every model and one settings record; its networks' runs stay valid."""
    import hashlib

    from distilxlsr import __version__
    from distilxlsr.evaluate.store import _file_stats

    out = tmp_path / "old"
    models = [f"t={teacher_dir}", "logmel"]
    network = resolve_model(str(teacher_dir))
    stride = ModelFeatures(network).frame_stride
    probe = ProbeConfig(steps=6)
    first = evaluate(models, str(eval_corpus), str(out), probe=probe)
    for lang in ("aa", "bb"):
        path = out / "languages" / f"{lang}.json"
        stored = json.loads(path.read_text())
        lang_dir = eval_corpus / lang
        facts = {  # the previous version's fingerprint, as it computed it
            "version": __version__,
            "models": [
                ["t", network.kind, network.path, _file_stats(teacher_dir, "*.safetensors")],
                ["logmel", "logmel", "", []],
            ],
            "stride": stride,
            "mode": "probe",
            "seeds": [0],
            "similarity": False,
            "settings": {**probe.__dict__},
            "split": None,
            "data": [str(lang_dir.resolve()), _file_stats(lang_dir, "cuts_*")],
        }
        digest = hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()
        runs = {name: entry["run"] for name, entry in stored["models"].items()}
        path.write_text(json.dumps({"fingerprint": digest, "runs": runs, "similarity": None}))
    capsys.readouterr()
    # The floor now has its own probe: only the network's results are adopted.
    again = evaluate(
        models, str(eval_corpus), str(out), probe=probe, floor_probe=ProbeConfig(steps=7)
    )
    assert "reusing 2 of 4 (model, language) results" in capsys.readouterr().out
    assert again["models"][0]["per"] == first["models"][0]["per"]


def test_group_norm_features_do_not_depend_on_the_batch(eval_corpus):
    """A group-norm CNN normalises over every frame of a row: padded with a longer utterance,
    an utterance would get other features. Such models are run one utterance at a time."""
    from distilxlsr.evaluate.features import ModelSpec
    from distilxlsr.pretraining.encoder import build_encoder
    from distilxlsr.pretraining.recipe import TeacherShape

    shape = TeacherShape("hubert", 32, 2, 2, 64, 16, 16, 4)
    model = build_encoder(shape)
    assert model.config.feat_extract_norm == "group"
    model_dir = eval_corpus.parent / "group_norm_model"
    model.save_pretrained(model_dir)
    features = ModelFeatures(ModelSpec("g", "hf", str(model_dir)))
    data = load_language("aa", eval_corpus / "aa")
    short, long = sorted(data.train.waves, key=len)[:: len(data.train.waves) - 1]
    alone = features([short])[0]
    batched = features([short, long])[0]
    assert torch.equal(alone, batched)


def test_evaluating_a_subset_keeps_the_other_models_results(
    tmp_path, eval_corpus, teacher_dir, capsys
):
    out = tmp_path / "e"
    both = [f"t={teacher_dir}", f"u=untrained:{teacher_dir}"]
    evaluate(both, str(eval_corpus), str(out), probe=ProbeConfig(steps=5))
    evaluate([f"t={teacher_dir}"], str(eval_corpus), str(out), probe=ProbeConfig(steps=6))
    capsys.readouterr()
    evaluate(both, str(eval_corpus), str(out), probe=ProbeConfig(steps=5))
    assert "reusing 2 of 4" in capsys.readouterr().out  # u's results survived the subset run


def test_each_seed_trains_its_own_probe_the_one_that_seed_trains_alone(
    tmp_path, eval_corpus, teacher_dir, monkeypatch
):
    """`evaluate --seeds 0,1`: a probe per seed, the two different, each the probe (and the
    results) that `--seeds 0` and `--seeds 1` give."""
    import distilxlsr.evaluate.task as task

    probes = []

    def kept(*args, **kwargs):
        probe, info = train_probe(*args, **kwargs)
        probes.append({k: v.clone() for k, v in probe.state_dict().items()})
        return probe, info

    monkeypatch.setattr(task, "train_probe", kept)
    runs = {}
    for seeds in ("0,1", "0", "1"):
        probes.clear()
        out = tmp_path / seeds.replace(",", "_")
        args = ["evaluate", "--model", str(teacher_dir), "--data", str(eval_corpus)]
        args += ["--langs", "aa", "--steps", "20", "--seeds", seeds, "--out", str(out)]
        assert main(args) == 0
        details = json.loads((out / "results.json").read_text())["models"][0]["details"]["aa"]
        runs[seeds] = (list(probes), details)
    (both, together), (zero, alone_0), (one, alone_1) = runs["0,1"], runs["0"], runs["1"]
    assert len(both) == 2 and len(zero) == len(one) == 1
    assert any(not torch.equal(both[0][k], both[1][k]) for k in both[0])
    for mine, alone in ((both[0], zero[0]), (both[1], one[0])):
        assert mine.keys() == alone.keys()
        assert all(torch.equal(mine[k], alone[k]) for k in mine)
    for key in ("per", "train_per", "layer_weights"):
        assert together[key] == alone_0[key] + alone_1[key], key
    edits = [u["edits"] for u in together["utterances"]]
    assert edits == [
        a["edits"] + b["edits"]
        for a, b in zip(alone_0["utterances"], alone_1["utterances"], strict=True)
    ]


def test_character_targets_are_scored_by_cer_in_every_mode(tmp_path, eval_corpus, teacher_dir):
    from distilxlsr.data.corpora import load_cuts
    from distilxlsr.evaluate.languages import target_symbols
    from distilxlsr.evaluate.report import report_markdown

    cuts = list(load_cuts(eval_corpus / "aa", "test"))
    text = cuts[0].supervisions[0].text  # the toy corpus's words, e.g. "p3p11s p2f"
    spelt = target_symbols(cuts[0], "chars")
    assert "".join(spelt) == text.lower().replace(" ", "|")
    results = evaluate(
        ["logmel"],
        str(eval_corpus),
        str(tmp_path / "probe"),
        langs=["aa"],
        probe=ProbeConfig(steps=3),
        targets="chars",
    )
    assert results["targets"] == "chars"
    first = results["models"][0]["details"]["aa"]["utterances"][0]
    assert first["phones"] == len(spelt)  # reference characters, delimiters included
    assert "CER (%) by language" in report_markdown(results)
    tuned = evaluate(
        [str(teacher_dir)],
        str(eval_corpus),
        str(tmp_path / "ft"),
        mode="finetune",
        langs=["aa"],
        finetune_config=_recipe(1, 1),
        targets="chars",
    )
    assert math.isfinite(tuned["models"][0]["per"]["aa"]) and tuned["targets"] == "chars"
    run = tmp_path / "ft" / "finetune-runs" / teacher_dir.name / "aa" / "seed-0"
    assert "|" in json.loads((run / "model" / "vocab.json").read_text())
