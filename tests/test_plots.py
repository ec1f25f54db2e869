"""The plots a reader must understand at a glance: per-method fronts with preference labels, readable titles,
learning curves per trained policy."""

import json

import numpy as np
import pytest

from morbench.plots import fronts_figure, learning_curves_figure, plot_fronts, plot_learning_curves

ENV = "morbench/Motifs-2obj-v0"


def _result(method, means, seed=0, run_dir=None, k=2):
    weights = [[i / (len(means) - 1), 1 - i / (len(means) - 1)] if k == 2 else [1 / k] * k for i in range(len(means))]
    return {
        "env": ENV,
        "method": method,
        "seed": seed,
        "objective_names": [f"motif_{j + 1}" for j in range(k)],
        "per_preference": [{"weights": w, "mean": list(m)} for w, m in zip(weights, means, strict=True)],
        "run_dir": str(run_dir) if run_dir is not None else None,
    }


def _inside(fig, artist):
    fig.canvas.draw()
    box = artist.get_window_extent(fig.canvas.get_renderer())
    width, height = fig.canvas.get_width_height()
    return box.x0 >= 0 and box.y0 >= 0 and box.x1 <= width and box.y1 <= height


def test_fronts_show_each_methods_non_dominated_front_and_preference_labels(tmp_path):
    import matplotlib.pyplot as plt

    good = _result("good", [(0.1, 0.9), (0.5, 0.6), (0.4, 0.4), (0.9, 0.1)])  # (0.4, 0.4) is dominated
    weak = _result("weak", [(0.1, 0.5), (0.3, 0.3), (0.5, 0.1), (0.2, 0.2)])
    fig = fronts_figure([good, weak])
    ax = fig.axes[0]
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert {"good", "weak"} <= set(lines)
    xs, ys = lines["good"].get_data()
    # the boundary of the region the method dominates: down, then right, through its non-dominated points only
    np.testing.assert_allclose(xs, [0.1, 0.1, 0.5, 0.5, 0.9])
    np.testing.assert_allclose(ys, [0.9, 0.6, 0.6, 0.1, 0.1])
    labels = {text.get_text() for text in ax.texts}
    assert {"(0,1)", "(1,0)", "(.33,.67)", "(.67,.33)"} <= labels
    assert _inside(fig, fig._suptitle)  # the 2-objective title was clipped before
    plt.close(fig)
    assert plot_fronts([good, weak], tmp_path / "fronts.png").stat().st_size > 5000


def test_three_objective_fronts_have_one_panel_per_pair_and_a_readable_title():
    import matplotlib.pyplot as plt

    means = [(0.2, 0.5, 0.7), (0.6, 0.3, 0.2), (0.4, 0.4, 0.4)]
    fig = fronts_figure([_result("a", means, k=3), _result("a", means, seed=1, k=3)])
    assert len(fig.axes) == 3 and _inside(fig, fig._suptitle)
    for ax in fig.axes:
        assert [line.get_label() for line in ax.get_lines()] == ["a"]
    plt.close(fig)


def _write_curve(run_dir, entries):
    run_dir.mkdir(parents=True)
    (run_dir / "curve.jsonl").write_text("".join(json.dumps(e) + "\n" for e in entries))


def test_learning_curves_draw_one_line_per_expert(tmp_path):
    import matplotlib.pyplot as plt

    # IterativeRS alternates experts: one line through all iterations jumped 0.75 -> 0.23 at every switch
    entries, tokens = [], 0
    for round_index in range(3):
        for expert, level in (("motif_1", 0.75), ("motif_2", 0.23)):
            for _ in range(2):
                tokens += 100
                entries.append({"expert": expert, "round": round_index, "score_mean": level, "sampled_tokens": tokens})
    _write_curve(tmp_path / "irs", entries)
    morlhf = [{"preference": p, "score_mean": 0.5, "sampled_tokens": 100 * i} for i, p in enumerate(["1_0", "0_1"])]
    _write_curve(tmp_path / "morlhf", morlhf)
    results = [_result("iterative_rs", [(0, 1), (1, 0)], run_dir=tmp_path / "irs")]
    results.append(_result("morlhf", [(0, 1), (1, 0)], run_dir=tmp_path / "morlhf"))
    fig = learning_curves_figure(results)
    irs_ax, morlhf_ax = fig.axes
    assert irs_ax.get_title() == "iterative_rs" and morlhf_ax.get_title() == "morlhf"
    drawn = [line for line in irs_ax.get_lines() if len(line.get_xdata())]
    assert len(drawn) == 2  # one per expert
    for line in drawn:
        assert len(set(line.get_ydata())) == 1  # no line mixes the two experts' scores
    assert {t.get_text() for t in irs_ax.get_legend().get_texts()} == {"expert motif_1", "expert motif_2"}
    assert {t.get_text() for t in morlhf_ax.get_legend().get_texts()} == {"preference 1_0", "preference 0_1"}
    assert _inside(fig, fig._suptitle)
    plt.close(fig)
    assert plot_learning_curves(results, tmp_path / "curves.png").stat().st_size > 5000


def test_no_curve_no_learning_curve_plot(tmp_path):
    (tmp_path / "run").mkdir()
    assert (
        plot_learning_curves([_result("prior", [(0, 1), (1, 0)], run_dir=tmp_path / "run")], tmp_path / "c.png") is None
    )


@pytest.mark.parametrize("weights", [[1.0, 0.0], [0.5, 0.5], [1 / 3, 1 / 3, 1 / 3], [0.25, 0.75]])
def test_preference_labels_are_compact(weights):
    from morbench.plots import _weights_label

    expected = {"[1.0, 0.0]": "(1,0)", "[0.5, 0.5]": "(.5,.5)", "[0.25, 0.75]": "(.25,.75)"}
    assert _weights_label(weights) == expected.get(str(weights), "(.33,.33,.33)")
