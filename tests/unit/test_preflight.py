"""The pre-flight's prediction on injected step and data times (pss.preflight): no timing here."""
import json

import pytest

from pss.budget import solve_budget
from pss.config import DataConfig
from pss.errors import ConfigError
from pss.preflight import (
    MeasuredCost,
    Measurements,
    data_pipeline,
    measurement_ratios,
    predict,
    read_data_report,
)
from pss.schedule import from_dict as schedule_from_dict

# A model whose step takes 40 ms + 100 ms x rho (batch 100): 1.0 -> 140 ms, 0.6 -> 100 ms, 0.2 -> 60 ms.
STEPS = {1.0: 0.140, 0.8: 0.120, 0.6: 0.100, 0.4: 0.080, 0.2: 0.060}


def test_model_bound_prediction_is_the_model_ratio():
    meas = Measurements(STEPS, data_time_s=0.030, batch_size=100, overlap=True)
    pred = predict(meas, [1.0, 0.6, 0.2, 0.2])
    assert pred.time_ratio == pytest.approx((0.14 + 0.10 + 0.06 + 0.06) / (4 * 0.14))
    assert pred.time_ratio == pytest.approx(pred.model_time_ratio)
    assert pred.bound == "model" and pred.data_bound_keep_ratios == []
    assert pred.message.startswith("model-bound: loader 3,333 img/s")
    assert "the model at rho 0.2 takes 1,667 img/s" in pred.message


def test_data_bound_at_every_ratio_predicts_no_saving():
    meas = Measurements(STEPS, data_time_s=0.200, batch_size=100, overlap=True)
    pred = predict(meas, [1.0, 0.6, 0.2])
    assert pred.time_ratio == pytest.approx(1.0)
    assert pred.model_time_ratio == pytest.approx(0.3 / 0.42)
    assert pred.bound == "data"
    assert pred.message.startswith("data-bound: loader 500 img/s")
    assert "expected time ratio 1.00, not 0.71: raise data.num_workers, use data.in_memory" in pred.message


def test_mixed_names_the_keep_ratios_that_wait_for_data():
    # loader 90 ms per batch: the model is faster than the loader at rho <= 0.4 (80 and 60 ms)
    meas = Measurements(STEPS, data_time_s=0.090, batch_size=100, overlap=True)
    values = [1.0] * 2 + [0.6] * 3 + [0.2] * 5
    pred = predict(meas, values)
    expected = (2 * 0.14 + 3 * 0.10 + 5 * 0.09) / (10 * 0.14)
    assert pred.time_ratio == pytest.approx(expected)  # 0.7357
    assert pred.model_time_ratio == pytest.approx((2 * 0.14 + 3 * 0.10 + 5 * 0.06) / 1.4)  # 0.6286
    assert pred.bound == "mixed" and pred.data_bound_keep_ratios == [0.2]
    assert "loader 1,111 img/s; the model at rho 0.2 takes 1,667 img/s: steps at rho <= 0.2 wait for data" in pred.message
    assert "expected time ratio 0.74, not 0.63" in pred.message


def test_serial_loader_adds_its_time_to_every_step():
    meas = Measurements(STEPS, data_time_s=0.070, batch_size=100, overlap=False, loader="in memory")
    pred = predict(meas, [1.0, 0.2])
    assert pred.time_ratio == pytest.approx((0.21 + 0.13) / 0.42)
    assert pred.bound == "serial"
    assert pred.message.startswith("data-bound: loader 1,429 img/s (in memory): its 70.0 ms per batch adds to every step")


def test_interpolation_and_clamp_below_the_measured_range():
    meas = Measurements({1.0: 1.0, 0.5: 0.5}, data_time_s=0.0, batch_size=1, overlap=True)
    assert meas.model_time(0.75) == pytest.approx(0.75)
    assert meas.model_time(0.1) == pytest.approx(0.5)  # never cheaper than measured
    with pytest.raises(ConfigError, match="keep ratio 1.0"):
        Measurements({0.5: 0.5}, data_time_s=0.0, batch_size=1, overlap=True)


def test_measured_cost_never_buys_ratios_the_loader_cannot_feed():
    """A data-bound loader: the budget solver goes lower than the FLOP-like model ratio alone would."""
    sched = schedule_from_dict({"name": "cyclic", "low": 0.2, "high": 1.0, "period_epochs": 1})
    fast = MeasuredCost(Measurements(STEPS, 0.0, 100, True))
    slow = MeasuredCost(Measurements(STEPS, 0.090, 100, True))
    assert slow(0.2) == pytest.approx(0.09 / 0.14) and slow(1.0) == 1.0
    p_fast = solve_budget(sched, 0.8, fast, 100, 1000)
    p_slow = solve_budget(sched, 0.8, slow, 100, 1000)
    assert p_slow.value < p_fast.value  # the flat part below the data wall costs the same: pay lower
    assert p_slow.predicted_cost <= 0.8 + 1e-9 and p_slow.cost_model == "measured"
    with pytest.raises(ConfigError, match="below what this schedule can reach"):
        solve_budget(sched, 0.5, slow, 100, 1000)  # a floor of 0.09 / 0.14 per step: 0.5 is out of reach


def test_measurement_ratios():
    assert measurement_ratios([1.0, 0.6, 0.2, 0.6]) == [1.0, 0.6, 0.2]
    assert measurement_ratios([0.3 + i / 100 for i in range(50)]) == [1.0, 0.825, 0.65, 0.475, 0.3]


def test_the_cost_setting_is_parsed_once_into_a_spec():
    from pss.budget_spec import CostSpec

    files = CostSpec.parse("measured:a.json, b.json")
    assert (files.kind, files.speed, files.data, files.from_files, files.timed_in_run) == (
        "measured", "a.json", "b.json", True, False)
    assert str(files) == "measured:a.json,b.json" and CostSpec.parse(files) is files
    assert CostSpec.parse("measured").timed_in_run and CostSpec.parse("flops") == CostSpec()
    table = CostSpec.parse("runs/speed.json")
    assert (table.kind, table.speed, str(table)) == ("table", "runs/speed.json", "runs/speed.json")
    with pytest.raises(ConfigError, match="measured:SPEED.json,DATA.json"):
        CostSpec.parse("measured:a.json")
    for bad in ("fast", "", None, 3):
        with pytest.raises(ConfigError, match="budget_cost .*(no cost model|must be)"):
            CostSpec.parse(bad)
    # the config keeps the spec; its file holds the text a recipe writes
    from pss.config import config_to_dict, load_config

    cfg = load_config(None, ["budget_cost=measured:a.json,b.json"])
    assert cfg.budget_cost == files and config_to_dict(cfg)["budget_cost"] == "measured:a.json,b.json"
    with pytest.raises(ConfigError, match="budget_cost 'fast' is no cost model: use flops, measured"):
        load_config(None, ["budget_cost=fast"])


def test_data_report_of_another_pipeline_is_refused(tmp_path):
    cfg = DataConfig(path=None, num_workers=2)
    mine = data_pipeline(cfg, 64, None)
    report = {"kind": "data", "pipeline": {**mine, "img_size": 64}, "results": [{"num_workers": 2, "mean_batch_s": 0.1}]}
    f = tmp_path / "data.json"
    f.write_text(json.dumps(report))
    with pytest.raises(ConfigError, match=r"another data pipeline \(img_size: 64 there, 32 here\)"):
        read_data_report(f, mine, 2)
    f.write_text(json.dumps({**report, "pipeline": mine}))
    assert read_data_report(f, mine, 2)["mean_batch_s"] == 0.1
    with pytest.raises(ConfigError, match="no row for num_workers 4 .* --workers 4"):
        read_data_report(f, mine, 4)
    with pytest.raises(ConfigError, match="not found"):
        read_data_report(tmp_path / "nope.json", mine, 2)
    (tmp_path / "speed.json").write_text('{"kind": "speed"}')
    with pytest.raises(ConfigError, match="is not a pss bench data report"):
        read_data_report(tmp_path / "speed.json", mine, 2)


def test_loader_quantiles_come_from_enough_batches(monkeypatch):
    """The median and the p90 (interpolated) wait per batch from MIN_QUANTILE_BATCHES timed batches on; from
    fewer, none (a p90 of 2 batches was the faster one, below the median). A fake clock gives each batch its wait."""
    import torch

    import pss.preflight as pf

    clock = [0.0]

    class Loader:
        def __init__(self, waits_ms):
            self.waits = waits_ms

        def __len__(self):
            return len(self.waits)

        def __iter__(self):
            for w in self.waits:
                clock[0] += w / 1000
                yield torch.zeros(2, 3), torch.zeros(2)

    monkeypatch.setattr(pf.time, "perf_counter", lambda: clock[0])
    stats, _ = pf.time_loader(Loader([50.0] + [float(w) for w in range(1, 11)]), "cpu", warmup=1, batches=10)
    assert stats["batches"] == 10 == pf.MIN_QUANTILE_BATCHES and stats["images"] == 20
    assert stats["mean_batch_s"] == pytest.approx(0.0055) and stats["median_wait_s"] == pytest.approx(0.0055)
    assert stats["p90_wait_s"] == pytest.approx(0.0091)  # between the 9th and 10th batch, not the 9th
    stats, _ = pf.time_loader(Loader([50.0, 1.0, 9.0]), "cpu", warmup=1, batches=2)
    assert stats["batches"] == 2 and stats["median_wait_s"] is None and stats["p90_wait_s"] is None
    assert stats["mean_batch_s"] == pytest.approx(0.005)


def test_ratios_to_time_follow_the_schedule_or_the_whole_grid():
    from pss.preflight import ratios_to_time

    cyc = schedule_from_dict({"name": "cyclic", "low": 0.2, "high": 1.0})
    assert ratios_to_time(cyc, 10, 100) == [1.0, 0.8, 0.6, 0.4, 0.2]
    assert ratios_to_time(schedule_from_dict(0.4), 10, 100) == [1.0, 0.4]
    # a budget solved on the times: every grid value (the fixed schedule has none: a spread of five)
    assert ratios_to_time(schedule_from_dict(0.4), 10, 100, whole_grid=True) == [1.0, 0.8, 0.6, 0.4, 0.2]
    grid = schedule_from_dict({"name": "cyclic", "grid": 0.25})
    assert ratios_to_time(grid, 10, 100, whole_grid=True) == [1.0, 0.75, 0.5, 0.25]
