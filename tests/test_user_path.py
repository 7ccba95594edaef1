"""What a new user relies on, from the demo to a shared model (issue 36): a stopped run is no
success, a resume with another process count is refused, the shipped teacher has a name, the
`--key value` style works, exported files name no local path, cards cite the paper and say when
results do not match, the top-level API imports lightly, and offline hub ids fail at once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import matplotlib
import pytest
import yaml
from matplotlib.container import BarContainer

from distilxlsr.cli import main
from distilxlsr.cli.commands import config_summary
from distilxlsr.data.toy import make_toy_corpus
from distilxlsr.evaluate.report import per_figure, similarity_figure
from distilxlsr.export import export_hf
from distilxlsr.shipped import shipped_teacher
from distilxlsr.training import checkpoint as ckpt
from distilxlsr.training.checkpoint import list_checkpoints

TINY = "tiny-cpu"


def _args(teacher, corpus, out, **extra) -> list[str]:
    values = {
        "teacher": teacher,
        "data.train": Path(corpus) / "en",
        "out": out,
        "data.num_workers": 0,
        "data.max_seconds": 2.0,
        "train.batch_seconds": 6.0,
        "train.log_every": 1,
    } | extra
    return [f"{k}={v}" for k, v in values.items()]


@pytest.fixture(scope="module")
def eval_corpus(tmp_path_factory):
    """ROOT with sw train and test splits (toy audio)."""
    root = tmp_path_factory.mktemp("eval_corpus")
    make_toy_corpus(root, "sw", "train", num_utterances=6, seed=1)
    make_toy_corpus(root, "sw", "test", num_utterances=3, seed=2)
    return root


@pytest.fixture(scope="module")
def shipped_run(tmp_path_factory, toy_corpus):
    """One distillation step of the shipped teacher, its settings given `--key value` style."""
    out = tmp_path_factory.mktemp("shipped") / "run"
    argv = ["distill", "--config", TINY, "--teacher", "shipped", "--out", str(out)]
    argv += ["--data.train", str(toy_corpus / "en"), "--train.max_steps", "1"]
    argv += ["--data.num_workers=0", "--data.max-seconds", "2.0", "--train.batch_seconds", "6"]
    assert main(argv) == 0
    return out


@pytest.mark.slow
@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_run_stopped_before_its_last_step_exits_with_the_signal(
    tmp_path, teacher_dir, toy_corpus, sig, code
):
    out = tmp_path / "run"
    args = _args(
        teacher_dir, toy_corpus, out, **{"train.max_steps": 2000, "train.checkpoint_every": 2}
    )
    cmd = [sys.executable, "-m", "distilxlsr", "distill", "--config", TINY, *args]
    env = os.environ | {"PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while not (out / "checkpoints" / "step-0000002").is_dir():
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.time() < deadline
        time.sleep(0.01)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    err = err.decode()
    assert proc.returncode == code, err  # `distill && export` stops; a scheduler sees a failure
    assert f"stopped by {sig.name} at step" in err and "Traceback" not in err
    done = [c.name for c in list_checkpoints(out)]
    assert done and "step-0002000" not in done  # it wrote its checkpoint, and did not finish


def test_resuming_with_another_number_of_processes_is_refused(
    tmp_path, teacher_dir, toy_corpus, capsys
):
    out = tmp_path / "run"
    args = _args(teacher_dir, toy_corpus, out)
    assert main(["distill", "--config", TINY, *args, "train.max_steps=2"]) == 0
    last = list_checkpoints(out)[-1]
    state = ckpt.read_trainer_state(last)
    assert state["world_size"] == 1
    state["world_size"] = 2  # as if two processes (torchrun) had written it
    ckpt.write_trainer_state(last, state)
    ckpt.write_manifest(last)
    capsys.readouterr()
    assert main(["distill", "--config", TINY, *args, "train.max_steps=4"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert "was trained by 2 process(es)" in err[0] and "now 1" in err[0]
    assert "torchrun --nproc_per_node 2" in err[0] and "a new out=DIR" in err[0]
    assert list_checkpoints(out)[-1] == last  # nothing trained


def test_distill_names_the_shipped_teacher_and_takes_key_value_options(shipped_run, capsys):
    saved = yaml.safe_load((shipped_run / "config.yaml").read_text())
    assert saved["teacher"] == "shipped" and saved["train"]["max_steps"] == 1
    assert saved["data"]["max_seconds"] == 2.0  # --data.max-seconds: dashes read as underscores
    facts = json.loads((shipped_run / "facts.json").read_text())
    assert facts["teacher_sha256"] == ckpt.weights_sha256(shipped_teacher())
    assert main(["init-student", "--teacher", "shipped", "--dry-run"]) == 0
    assert "teacher shipped: 8 layers" in capsys.readouterr().out


def test_a_value_missing_after_a_key_says_how_settings_are_given(capsys):
    assert main(["distill", "--config", TINY, "--teacher"]) == 2
    err = capsys.readouterr().err
    assert "--teacher needs a value" in err and "teacher=VALUE" in err


def test_tiny_cpu_says_when_its_warm_up_outlasts_the_run(tmp_path, teacher_dir, toy_corpus, capsys):
    out = tmp_path / "run"
    assert (
        main(
            ["distill", "--config", TINY, *_args(teacher_dir, toy_corpus, out)]
            + ["train.max_steps=1"]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "warning: train.warmup_steps=20 is not below train.max_steps=1" in printed


@pytest.mark.slow
def test_exported_files_name_no_local_path_and_the_card_cites_the_paper(shipped_run, tmp_path):
    hf = tmp_path / "student"
    assert main(["export", str(shipped_run), "--out", str(hf)]) == 0
    official = tmp_path / "official.pt"
    assert main(["export", str(shipped_run), "--format", "distilxlsr", "--out", str(official)]) == 0
    written = [p for p in hf.rglob("*") if p.is_file()] + [official]
    if _onnx_available():
        onnx_dir = tmp_path / "onnx"
        assert main(["export", str(shipped_run), "--format", "onnx", "--out", str(onnx_dir)]) == 0
        written += [p for p in onnx_dir.rglob("*") if p.is_file()]
        onnx_card = (onnx_dir / "README.md").read_text()
        assert "onnxruntime" in onnx_card and "library_name: onnx" in onnx_card
    local = [str(shipped_run.parent), str(shipped_teacher()), str(Path.cwd())]
    for path in written:
        data = path.read_bytes()
        for prefix in local:
            assert prefix.encode() not in data, (path.name, prefix)
    info = json.loads((hf / "distilxlsr.json").read_text())
    assert info["teacher"] == "shipped"
    card = (hf / "README.md").read_text()
    assert "| teacher | `shipped`: the small label-free teacher shipped inside distilxlsr" in card
    assert "https://arxiv.org/abs/2306.01303" in card and "@inproceedings{" in card
    assert "Wang, Haoyu and Wang, Siyuan and Zhang, Wei-Qiang and Bai, Jinfeng" in card


def _onnx_available() -> bool:
    try:
        import onnxruntime  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError:
        return False
    return True


def _results(student_path: str) -> dict:
    def model(name, path, per, lo, hi):
        return {
            "name": name,
            "path": path,
            "per": {"sw": per},
            "per_mean": per,
            "per_ci_by_lang": {"sw": [lo, hi]},
            "per_ci": [lo, hi],
        }

    student = model("student", student_path, 0.3, 0.2, 0.4)
    student["gain_retained"] = {"all": 0.6}
    student["gain_retained_ci"] = {"all": [0.5, 0.7]}
    return {
        "mode": "probe",
        "split": "test",
        "models": [
            model("teacher", "/t", 0.1, 0.05, 0.15),
            student,
            model("logmel", "logmel", 0.6, 0.5, 0.7),
        ],
    }


def test_the_card_shows_teacher_and_student_with_intervals(shipped_run, tmp_path, capsys):
    results = tmp_path / "results.json"
    results.write_text(json.dumps(_results(str(shipped_run))))
    card = (export_hf(shipped_run, tmp_path / "s", results) / "README.md").read_text()
    assert "warning" not in capsys.readouterr().err
    assert "| language | student (this model) | teacher | logmel |" in card
    assert "| sw | 30.0 [20.0, 40.0] | 10.0 [5.0, 15.0] | 60.0 [50.0, 70.0] |" in card
    assert "Gain retained over logmel: 0.60 [0.50, 0.70]" in card


def test_export_warns_when_the_results_name_no_model_it_can_match(shipped_run, tmp_path, capsys):
    results = tmp_path / "results.json"
    results.write_text(json.dumps(_results("/somewhere/else")))
    assert (
        main(["export", str(shipped_run), "--out", str(tmp_path / "s"), "--results", str(results)])
        == 0
    )
    err = capsys.readouterr().err
    assert f"warning: {results} names no model at this student's paths" in err
    assert "student (/somewhere/else)" in err and "no evaluation section" in err
    assert "## Evaluation" not in (tmp_path / "s" / "README.md").read_text()


@pytest.mark.slow
def test_the_package_top_level_api_is_light_and_complete():
    probe = (
        "import sys, distilxlsr\n"
        "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))\n"
        "print(distilxlsr.shipped_teacher().name)\n"
        "from distilxlsr.errors import UserError\n"
        "import distilxlsr.distill.train, distilxlsr.evaluate.harness\n"
        "assert distilxlsr.distill.train.distill and distilxlsr.export.export_hf\n"
        "for call in (lambda: distilxlsr.export('/no/such/run', 'x'),\n"
        "             lambda: distilxlsr.evaluate(['logmel'], 'x', 'y', mode='bad'),\n"
        "             lambda: distilxlsr.distill(distilxlsr.load_config(None, ['teacher=']))):\n"
        "    try:\n"
        "        call()\n"
        "    except UserError as err:\n"
        "        print(str(err).split(';')[0])\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    lines = out.stdout.splitlines()
    assert lines[:2] == ["[]", "teacher"], (
        out.stdout
    )  # importing loads neither torch nor transformers
    assert "'/no/such/run' does not exist" in lines[2]
    assert "--mode 'bad'" in lines[3] and "no teacher given" in lines[4]


def test_config_list_shows_each_first_command_whole(capsys):
    assert config_summary("# a b \\\n#     c d\n#\n# text\n") == "a b c d"
    assert main(["config", "list"]) == 0
    listed = capsys.readouterr().out
    assert "\\" not in listed and "stage1.steps=N1 stage2.steps=N2" in listed


def test_evaluate_prints_its_result_paths_once_joined(tmp_path, eval_corpus, capsys):
    out = f"{tmp_path / 'eval'}/"
    argv = ["evaluate", "--model", "logmel", "--data", str(eval_corpus), "--out", out]
    assert main([*argv, "--floor-steps", "1", "--bootstrap", "100"]) == 0
    printed = capsys.readouterr().out
    assert f"results in {tmp_path / 'eval' / 'results.json'}," in printed and "//" not in printed


def test_fine_tuning_prints_no_load_report(tmp_path, teacher_dir, eval_corpus, capfd):
    argv = ["evaluate", "--model", str(teacher_dir), "--data", str(eval_corpus), "--mode"]
    argv += ["finetune", "--steps", "1", "--bootstrap", "100", "--out", str(tmp_path / "ft")]
    argv += ["finetune.frozen.steps=1"]
    assert main(argv) == 0
    said = capfd.readouterr()
    assert "LOAD REPORT" not in said.err + said.out and "MISSING" not in said.err + said.out


@pytest.mark.slow
def test_a_hub_id_without_a_network_fails_at_once(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.upper().endswith("PROXY")}
    env.pop("HF_HUB_OFFLINE", None)
    env |= {"HF_ENDPOINT": "http://127.0.0.1:9", "HF_HOME": str(tmp_path / "hf")}
    cmd = [sys.executable, "-m", "distilxlsr", "init-student", "--teacher", "nosuchorg/model"]
    start = time.perf_counter()
    done = subprocess.run([*cmd, "--dry-run"], env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    assert done.returncode == 2, done.stderr
    assert "the hub (127.0.0.1) cannot be reached from here" in done.stderr
    assert seconds < 20, seconds  # huggingface_hub alone retries for about 30 s


def test_per_png_has_interval_bars_and_its_legend_beside_the_axes():
    matplotlib.use("Agg")
    results = _results("/s") | {"languages": ["sw"]}
    fig = per_figure(results)
    ax = fig.axes[0]
    bars = [c for c in ax.containers if isinstance(c, BarContainer)]
    assert len(bars) == 3 and all(b.errorbar is not None for b in bars)
    low, high = bars[1].errorbar.lines[2][0].get_segments()[0][:, 1]
    assert (low, high) == pytest.approx((20.0, 40.0))  # the student's 95% interval
    fig.canvas.draw()
    legend = ax.get_legend().get_window_extent()
    assert legend.x0 >= ax.get_window_extent().x1  # beside the bars, never over one
    similarity = {"sw": {"student": {"cka": [0.9, 0.8], "targets": [2, 4]}}}
    fig = similarity_figure(similarity)
    ax, colorbar = fig.axes
    assert ax.get_xlabel() and ax.get_ylabel() == "language"
    assert "CKA" in colorbar.get_ylabel()
