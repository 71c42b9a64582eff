import dataclasses
import json
import math
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from sr3.checkpoint import list_checkpoints
from sr3.config import load_config
from sr3.errors import SR3Error
from sr3.train.loop import Trainer


def _weights(run):
    ckpt = list_checkpoints(run)[-1]
    return load_file(ckpt / "train_state.safetensors"), load_file(ckpt / "ema.safetensors")


def test_resume_equals_uninterrupted_training(tmp_path, photo_dir, tiny_config):
    Trainer(tiny_config, photo_dir, tmp_path / "straight").fit(6, progress=False)
    Trainer(tiny_config, photo_dir, tmp_path / "split").fit(4, progress=False)
    Trainer(tiny_config, photo_dir, tmp_path / "split", resume=True).fit(6, progress=False)
    (state_a, ema_a), (state_b, ema_b) = _weights(tmp_path / "straight"), _weights(tmp_path / "split")
    assert state_a.keys() == state_b.keys() and ema_a.keys() == ema_b.keys()
    assert all(torch.equal(state_a[k], state_b[k]) for k in state_a), "model/optimizer differ after resume"
    assert all(torch.equal(ema_a[k], ema_b[k]) for k in ema_a), "EMA differs after resume"
    records = [json.loads(line) for line in (tmp_path / "split" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "loss" in r] == [2, 4, 6]


def test_accumulated_small_batches_equal_one_large_batch(tmp_path, photo_dir, tiny_config):
    """Every sample draws its noise from its own generator, so 2 x 2 accumulated equals 4 at once (to rounding)."""
    def run(name, batch, accum):
        train = dataclasses.replace(tiny_config.train, batch_size=batch, grad_accum=accum, lr=1e-3, warmup_steps=0)
        Trainer(dataclasses.replace(tiny_config, train=train), photo_dir, tmp_path / name).fit(3, progress=False)
        return _weights(tmp_path / name)[0]

    large, small = run("large", 4, 1), run("small", 2, 2)
    weights = [k for k in large if k.startswith("model.")]
    moved = max((large[k] - small[k]).abs().max().item() for k in weights)
    assert moved < 2e-5, f"accumulated training differs by {moved}"  # float rounding, amplified by Adam
    other = run("other", 2, 1)  # half the batch: really different, so the check above can fail
    assert max((large[k] - other[k]).abs().max().item() for k in weights) > 1e-3


def test_refuses_to_overwrite_or_resume_a_different_model(tmp_path, photo_dir, tiny_config):
    Trainer(tiny_config, photo_dir, tmp_path / "run").fit(2, progress=False)
    with pytest.raises(SR3Error, match="--resume"):
        Trainer(tiny_config, photo_dir, tmp_path / "run")
    other = load_config("tiny", ["model.base_channels=8"])
    with pytest.raises(SR3Error, match="'model' config differs"):
        Trainer(other, photo_dir, tmp_path / "run", resume=True)


def test_run_dir_holds_config_logs_grids_and_checkpoints(tmp_path, photo_dir, tiny_config):
    cfg = load_config("tiny", ["train.val_every=2", "train.log_every=1", "train.checkpoint_every=2"])
    Trainer(cfg, photo_dir, tmp_path / "run").fit(2, progress=False)
    run = tmp_path / "run"
    assert json.loads((run / "config.json").read_text())["data"]["scale"] == 4
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert {"loss", "lr", "sec_per_step"} <= records[0].keys()
    val = [r for r in records if "val/psnr_y" in r]
    assert val and "val/val_loss" in val[0] and 0 < val[0]["val/st_lpips"] < 2  # the perception axis beside PSNR
    assert (run / "samples" / "step-0000002.png").is_file()
    assert list((run / "tensorboard").rglob("events.out.tfevents*"))


@pytest.mark.slow
def test_training_beats_its_untrained_self(tmp_path, photo_dir):
    cfg = load_config("tiny", ["train.log_every=50", "train.val_every=100000", "train.checkpoint_every=100000",
                               "train.lr=1e-3", "train.ema_decay=0.9"])
    trainer = Trainer(cfg, photo_dir, tmp_path / "run")
    from sr3.train.validate import validation_loss

    before = validation_loss(trainer.ema_pipeline(), trainer.val, trainer.gammas)
    trainer.fit(250, progress=False)
    after = validation_loss(trainer.ema_pipeline(), trainer.val, trainer.gammas)
    assert after < 0.5 * before, (before, after)  # measured: 0.80 -> 0.15


PROBE = textwrap.dedent(
    """
    import hashlib, json, sys
    import torch
    from sr3.config import load_config
    from sr3.train.loop import Trainer

    data, run = sys.argv[1], sys.argv[2]
    cfg = load_config("tiny", ["train.batch_size=2", "train.val_every=1000", "train.checkpoint_every=1000"])
    trainer = Trainer(cfg, data, run)
    trainer.fit(3, progress=False)
    state = trainer.acc.unwrap_model(trainer.net).state_dict()
    digest = hashlib.sha256(b"".join(state[k].numpy().tobytes() for k in sorted(state))).hexdigest()
    rank = trainer.acc.process_index
    json.dump({"rank": rank, "world": trainer.acc.num_processes, "digest": digest}, open(f"{run}/rank{rank}.json", "w"))
    """
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_process_accelerate_run_keeps_ranks_identical(tmp_path, photo_dir):
    script = tmp_path / "probe.py"
    script.write_text(PROBE)
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(_free_port()),
           str(script), str(photo_dir), str(run)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [json.loads((run / f"rank{r}.json").read_text()) for r in range(2)]
    assert [r["world"] for r in ranks] == [2, 2]
    assert ranks[0]["digest"] == ranks[1]["digest"]
    assert len(list_checkpoints(run)) == 1


def test_training_with_conditioning_augmentation(tmp_path, photo_dir):
    cfg = load_config("tiny", ["model.augment_embedding=true", "augment.noise_max=0.3", "augment.blur_prob=0.5",
                               "train.checkpoint_every=2", "train.val_every=2"])
    assert Trainer(cfg, photo_dir, tmp_path / "run").fit(2, progress=False).name == "step-0000002"
    with pytest.raises(SR3Error, match="augment_embedding"):
        Trainer(load_config("tiny", ["augment.noise_max=0.3"]), photo_dir, tmp_path / "other")


def test_optimizer_is_fused_adamw_matching_the_reference_update(tiny_config):
    from sr3.train.loop import make_optimizer

    torch.manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(64, 32)), torch.nn.Parameter(torch.randn(7))]
    twins = [torch.nn.Parameter(p.detach().clone()) for p in params]
    start = [p.detach().clone() for p in params]
    fused = make_optimizer(params, tiny_config.train, torch.device("cpu"))
    t = tiny_config.train
    plain = torch.optim.AdamW(twins, lr=t.lr, betas=tuple(t.adam_betas), weight_decay=t.weight_decay, foreach=False)
    assert fused.param_groups[0]["fused"]
    for _ in range(3):
        grads = [torch.randn_like(p) for p in params]
        for p, q, g in zip(params, twins, grads):
            p.grad, q.grad = g.clone(), g.clone()
        fused.step()
        plain.step()
    assert all(torch.allclose(p, q, atol=1e-6) for p, q in zip(params, twins))
    assert all(not torch.allclose(p, s) for p, s in zip(params, start)), "the steps did not move the parameters"


def test_validation_reports_what_sr3_eval_reports(tmp_path, photo_dir, tiny_config):
    from sr3.evaluate import EvalPair, evaluate
    from sr3.imaging import quantize
    from sr3.metrics.st_lpips import st_lpips
    from sr3.train.validate import sample_metrics
    from sr3.upscaler import ModelUpscaler, UpscaleSettings

    trainer = Trainer(tiny_config, photo_dir, tmp_path / "run")
    trainer.fit(2, progress=False)
    pipe, val = trainer.ema_pipeline(), trainer.val
    logged, _ = sample_metrics(pipe, val, steps=3)
    pairs = [EvalPair(str(i), hr, lr) for i, (hr, lr) in enumerate(zip(val.hr, val.lr))]
    # the model's own colour fix and tile, as logged
    upscaler = ModelUpscaler(pipe, "run", UpscaleSettings(steps=3))
    evaluated = evaluate(upscaler, pairs)
    assert logged.keys() - {"st_lpips"} == {k for k in evaluated if k in logged} and len(logged) == 6
    for name, value in logged.items():
        if name != "st_lpips":
            assert value == pytest.approx(evaluated[name], rel=1e-9), name
    # ST-LPIPS of the same outputs, as sr3 eval --perceptual scores each image (rounded to 8 bits first)
    sr = upscaler.super_resolve(val.lr, list(range(len(val.lr))))[0]
    expected = np.mean([st_lpips(quantize(out)[None], hr[None]).item() for out, hr in zip(sr, val.hr)])
    assert logged["st_lpips"] == pytest.approx(expected, rel=1e-5)


def test_a_new_metric_is_one_table_entry(monkeypatch, tmp_path, photo_dir):
    from sr3.cli.eval import format_table
    from sr3.evaluate import evaluation_pairs, evaluate
    from sr3.metrics import scores
    from sr3.upscaler import ModelUpscaler

    from conftest import untrained_pipeline

    entry = scores.Metric(lambda s: float(s.sr.mean()), "mean", ".3f", True)
    monkeypatch.setitem(scores.SR_METRICS, "mean", entry)
    pipe = untrained_pipeline(load_config("tiny", ["sampler.steps=1"]))
    result = evaluate(ModelUpscaler(pipe, "tiny"), evaluation_pairs(photo_dir, None, 4, limit=1))
    assert "mean" in result and "mean" in result["bicubic"] and "mean" in result["per_image"][0]
    assert "mean" in format_table(result).splitlines()[0]


REFINER = ["noise.sigma_max=0.5", "noise.min_snr=5", "train.ema_rampup=0.05"]


def test_ema_rampup_caps_the_half_life_at_a_fraction_of_the_samples_seen():
    from sr3.train.ema import EMA

    net = torch.nn.Linear(2, 2)
    plain, ramped = EMA(net, 0.999), EMA(net, 0.999, rampup=0.05)
    assert [plain.decay_at(n) for n in range(50)] == [min(0.999, (1 + n) / (10 + n)) for n in range(50)]
    assert ramped.decay_at(0) == 0.0  # nothing seen yet: the average is the weights
    for step in (1, 10, 100, 10_000, 10**6):
        for batch in (4, 256):  # 0.5 ** (B / (r * step * B)): the samples per step cancel
            rule = min(plain.decay_at(step), 0.5 ** (batch / (0.05 * step * batch)))
            assert ramped.decay_at(step) == pytest.approx(rule, rel=1e-12)
    assert ramped.decay_at(100) ** 5 == pytest.approx(0.5)  # half-life 0.05 * 100 steps
    assert ramped.decay_at(10**6) == plain.decay_at(10**6) == 0.999  # late on, today's decay rules


def test_refiner_options_train_and_resume_exactly(tmp_path, photo_dir, tiny_config):
    cfg = load_config("tiny", ["train.log_every=2", "train.val_every=1000", "train.checkpoint_every=2", *REFINER])
    assert Trainer(cfg, photo_dir, tmp_path / "straight").fit(4, progress=False).name == "step-0000004"
    Trainer(cfg, photo_dir, tmp_path / "split").fit(2, progress=False)
    Trainer(cfg, photo_dir, tmp_path / "split", resume=True).fit(4, progress=False)
    Trainer(tiny_config, photo_dir, tmp_path / "plain").fit(4, progress=False)
    (state_a, ema_a), (state_b, ema_b) = _weights(tmp_path / "straight"), _weights(tmp_path / "split")
    assert all(torch.equal(state_a[k], state_b[k]) for k in state_a), "model/optimizer differ after resume"
    assert all(torch.equal(ema_a[k], ema_b[k]) for k in ema_a), "EMA differs after resume"
    state_p, ema_p = _weights(tmp_path / "plain")
    assert not all(torch.equal(state_a[k], state_p[k]) for k in state_a)  # the options change the training
    assert not all(torch.equal(ema_a[k], ema_p[k]) for k in ema_a)
    records = [json.loads(line) for line in (tmp_path / "split" / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in records if "loss" in r]
    assert len(losses) == 2 and all(math.isfinite(v) for v in losses)


def test_a_noise_cap_below_the_first_step_is_refused_before_training(tmp_path, photo_dir):
    with pytest.raises(SR3Error, match="noise.sigma_max .* below the schedule's first step"):
        Trainer(load_config("tiny", ["noise.sigma_max=1e-4"]), photo_dir, tmp_path / "run")
    assert not (tmp_path / "run").exists()
