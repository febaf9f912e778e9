"""Reports from a small real run: the tables' numbers against the database, the page."""

from __future__ import annotations

import base64
import html
import io
import re
import sqlite3

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from dgbench.harness.cli import main
from dgbench.reports.build import build_report
from dgbench.reports.results import ReportError
from dgbench.reports.summary import mean_interval


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "run"
    assert main(["run", "--suite", "smoke", "--estimators", "reinforce,rloo,disarm,gumbel-softmax,exact",
                 "--seeds", "3", "--out", str(out), "--workers", "1", "--quiet"]) == 0
    return out


def db_values(run_dir, kind, name):
    with sqlite3.connect(run_dir / "results.db") as db:
        return pd.read_sql(
            "SELECT c.problem, c.options, c.estimator, c.seed, m.value FROM metrics m JOIN cells c ON c.key = m.cell_key "
            "WHERE c.kind = ? AND m.name = ? AND c.status = 'done'", db, params=(kind, name))


def test_summary_numbers_match_the_database(run_dir, tmp_path):
    build_report(run_dir, ["csv"], tmp_path)
    summary = pd.read_csv(tmp_path / "summary.csv")
    for column, kind, name, transform in (("grad MSE", "gradstats", "mse", None),
                                          ("final objective", "train", "final_objective", None),
                                          ("log10 grad variance", "gradstats", "variance_mean", np.log10)):
        db = db_values(run_dir, kind, name)
        checked = 0
        for (problem, estimator), group in db.groupby(["problem", "estimator"]):
            if group["options"].nunique() != 1:
                continue
            values = group["value"].to_numpy()
            values = transform(values) if transform else values
            row = summary[(summary["estimator"] == estimator) & summary["config"].str.startswith(problem)]
            row = row[row["config"].str.contains(re.escape(", ".join(f"{k}={v}" for k, v in sorted(
                __import__("json").loads(group["options"].iloc[0]).items()))))]
            assert len(row) == 1
            assert row[f"{column} mean"].iloc[0] == pytest.approx(values.mean(), rel=1e-9, abs=1e-12)
            low, high = row[f"{column} ci_low"].iloc[0], row[f"{column} ci_high"].iloc[0]
            assert values.min() - 1e-12 <= low <= high <= values.max() + 1e-12
            assert row["seeds"].iloc[0] == len(values)
            checked += 1
        assert checked > 0, column


def test_status_counts_and_skips_match_the_database(run_dir, tmp_path):
    build_report(run_dir, ["csv"], tmp_path)
    summary = pd.read_csv(tmp_path / "summary.csv")
    with sqlite3.connect(run_dir / "results.db") as db:
        counts = dict(db.execute("SELECT status, COUNT(*) FROM cells GROUP BY status").fetchall())
    for status in ("done", "skipped"):
        assert summary[status].sum() == counts.get(status, 0)


def test_bootstrap_interval_covers_the_mean_and_needs_two_seeds():
    mean, low, high = mean_interval(np.array([1.0, 2.0, 3.0, 4.0]))
    assert mean == 2.5 and 1.0 <= low < 2.5 < high <= 4.0
    mean, low, high = mean_interval(np.array([5.0]))
    assert mean == 5.0 and np.isnan(low) and np.isnan(high)


def test_html_page_is_self_contained_and_escapes_names(run_dir, tmp_path):
    copy = tmp_path / "run"
    copy.mkdir()
    (copy / "results.db").write_bytes((run_dir / "results.db").read_bytes())
    with sqlite3.connect(copy / "results.db") as db:  # a plugin with a hostile name
        db.execute("UPDATE cells SET estimator = '<script>alert(1)</script>' WHERE estimator = 'rloo'")
    written = build_report(copy, None, tmp_path / "report")
    page = (tmp_path / "report" / "index.html").read_text()
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    images = re.findall(r'<img [^>]*src="([^"]+)"', page)
    assert len(images) >= 5 and all(src.startswith(("data:image/webp;base64,", "data:image/png;base64,"))
                                    for src in images)
    for name, src in re.findall(r'<img alt="([^"]+)" src="([^"]+)"', page):  # lossless: the PNGs' pixels
        inlined = Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))).convert("RGB")
        png = Image.open(tmp_path / "report" / "figures" / f"{name}.png").convert("RGB")
        assert np.array_equal(np.asarray(inlined), np.asarray(png)), name
    panels = re.findall(r'<img alt="[^"]+" title="[^"]+" data-figure="([^"]+)" data-box="([^"]+)" src="([^"]+)"', page)
    assert panels  # a configuration's panels beside its table: cut out of the same PNG, pixel for pixel
    for name, box, src in panels:
        inlined = Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))).convert("RGB")
        png = Image.open(tmp_path / "report" / "figures" / f"{name}.png").convert("RGB")
        assert np.array_equal(np.asarray(inlined), np.asarray(png.crop(tuple(map(int, box.split(",")))))), name
    assert "http://" not in page and "https://" not in page
    assert "git_commit" in page and "Skipped, diverged and failed cells" in page
    assert "deterministic reference" in page  # exact's skipped gradstats cells, with their reason
    assert {p.suffix for p in written} >= {".html", ".png", ".csv", ".md", ".tex"}
    assert ".svg" not in {p.suffix for p in written}  # vector copies only on request


def test_svg_on_request_and_an_earlier_reports_figures_do_not_linger(run_dir, tmp_path):
    out = tmp_path / "report"
    with_svg = build_report(run_dir, ["svg"], out)
    svgs = {p.stem for p in with_svg if p.suffix == ".svg"}
    assert svgs and svgs == {p.stem for p in with_svg if p.suffix == ".png"}  # every figure, both ways
    assert not (out / "index.html").exists()
    assert all(p.read_text().lstrip().startswith("<?xml") for p in with_svg if p.suffix == ".svg")
    build_report(run_dir, ["html"], out)
    assert sorted(p.suffix for p in (out / "figures").iterdir()) == [".png"] * len(svgs)


def test_figures_drawn_in_a_pool_equal_those_drawn_in_turn(run_dir, tmp_path):
    from dgbench.reports.figures import all_figures
    from dgbench.reports.leaderboard import boards, overall
    from dgbench.reports.results import load
    from dgbench.reports.summary import long_summary

    results = load(run_dir)
    board_map = boards(results)
    drawn = {}
    for processes in (1, 3):
        figures = all_figures(results, long_summary(results), board_map, tmp_path / str(processes), overall(board_map),
                              processes=processes)
        drawn[processes] = {title: ([p.read_bytes() for p in d.paths], d.panels) for title, d in figures.items()}
    assert len(drawn[1]) >= 5 and list(drawn[1]) == list(drawn[3])  # the same figures, in the page's order
    assert drawn[1] == drawn[3]  # byte for byte


def test_the_report_command_ends_its_drawing_processes_quietly(run_dir, tmp_path):
    """`dgbench report` installs a SIGTERM handler; the pool's forked drawing processes
    must not inherit it, or each prints a traceback when the pool ends."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "dgbench.harness.cli", "report", str(run_dir), "--out",
                           str(tmp_path / "report"), "--format", "html"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr and "Terminated" not in done.stderr, done.stderr


def test_curves_are_mean_and_sample_sd_over_seeds_per_step():
    from dgbench.reports.figures import _curves

    rng = np.random.default_rng(0)
    series = pd.DataFrame({"step": np.repeat([10, 0, 20], [3, 1, 4]), "value": rng.normal(size=8),
                           "wall": rng.uniform(size=8)}).sample(frac=1, random_state=1)
    got = _curves(series, "wall")
    expected = series.groupby("step").agg(x=("wall", "mean"), mean=("value", "mean"), sd=("value", "std"),
                                          n=("value", "size"))
    assert list(got.index) == [0, 10, 20]
    np.testing.assert_allclose(got["x"], expected["x"], rtol=1e-12)
    np.testing.assert_allclose(got["mean"], expected["mean"], rtol=1e-12)
    np.testing.assert_allclose(got["sd"], expected["sd"].fillna(0), rtol=1e-12)  # one seed: no band
    np.testing.assert_allclose(got["half"], 1.96 * expected["sd"].fillna(0) / np.sqrt(expected["n"]), rtol=1e-12)


def _score_ranks(summary: pd.DataFrame) -> pd.DataFrame:
    return summary[summary["score rank"].notna()][["config", "estimator", "score metric", "score rank"]]


def test_rankings_use_the_true_score_never_the_training_surrogate(run_dir, tmp_path):
    """Ranks follow the mean of each problem's declared score (the exact objective at hard
    samples on the toys); making gumbel-softmax's relaxed training objective the best
    possible changes nothing; the enumeration reference is never ranked."""
    build_report(run_dir, ["csv"], tmp_path / "a")
    summary = pd.read_csv(tmp_path / "a" / "summary.csv")
    ranked = _score_ranks(summary)
    assert set(ranked["score metric"]) == {"exact_objective"} and "exact" not in set(ranked["estimator"])
    scores = db_values(run_dir, "train", "final_exact_objective")
    for config, group in ranked.groupby("config"):
        problem = config.split("(")[0]
        means = scores[(scores["problem"] == problem) & (scores["estimator"] != "exact")].groupby("estimator")["value"].mean()
        expected = means.rank(method="min").astype(int)  # both toys minimise
        assert dict(zip(group["estimator"], group["score rank"].astype(int))) == expected.to_dict(), config
    copy = tmp_path / "run"
    copy.mkdir()
    (copy / "results.db").write_bytes((run_dir / "results.db").read_bytes())
    with sqlite3.connect(copy / "results.db") as db:
        db.execute("UPDATE metrics SET value = -1e9 WHERE name = 'final_objective' AND cell_key IN "
                   "(SELECT key FROM cells WHERE estimator = 'gumbel-softmax')")
    build_report(copy, ["csv"], tmp_path / "b")
    after = _score_ranks(pd.read_csv(tmp_path / "b" / "summary.csv"))
    pd.testing.assert_frame_equal(after.reset_index(drop=True), ranked.reset_index(drop=True))


def test_page_opens_with_the_leaderboard_and_summary_md_is_a_markdown_table(run_dir, tmp_path):
    build_report(run_dir, ["html", "md"], tmp_path)
    page = (tmp_path / "index.html").read_text()
    assert page.index("Leaderboard") < page.index("Details per problem configuration") < page.index("<img")
    board = page[page.index("Leaderboard"):page.index("</table>", page.index("Leaderboard"))]
    assert "reference exact" in board  # shown as a reference line, not ranked
    assert "lower is better" in board and "higher is better" not in board  # the toys minimise
    lines = (tmp_path / "summary.md").read_text().splitlines()
    header = lines.index(next(line for line in lines if line.startswith("| configuration |")))
    assert lines[header + 1].startswith("|---") and lines[header + 1].count("|") == lines[header].count("|")
    assert all(line.count("|") >= lines[header].count("|") for line in lines[header + 2:header + 4])


def test_report_cli_errors_are_one_line(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    assert "holds no results database" in capsys.readouterr().err
    with pytest.raises(ReportError):
        build_report(tmp_path, ["pdf"])


def test_report_and_export_read_directories_with_uri_characters(run_dir, tmp_path):
    """'#', '?' and '%' in the path are quoted into the read-only SQLite URI."""
    from dgbench.harness.export import export

    odd = tmp_path / "we#ird?dir%20x"
    odd.mkdir()
    (odd / "results.db").write_bytes((run_dir / "results.db").read_bytes())
    written = build_report(odd, ["csv"], tmp_path / "report")
    assert [p.name for p in written] == ["summary.csv"]
    assert {p.name for p in export(odd, "csv", tmp_path / "export")} == {"runs.csv", "cells.csv", "metrics.csv",
                                                                         "series.csv"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export", "report", "we#ird?dir%20x"]  # no stray file


def test_a_database_without_declarations_says_so(run_dir, tmp_path):
    old = tmp_path / "old"
    old.mkdir()
    (old / "results.db").write_bytes((run_dir / "results.db").read_bytes())
    with sqlite3.connect(old / "results.db") as db:
        db.execute("DROP TABLE catalog")
    build_report(old, ["html", "md"], tmp_path / "report")
    assert "predates recorded declarations" in (tmp_path / "report" / "index.html").read_text()
    assert "predates recorded declarations" in (tmp_path / "report" / "summary.md").read_text()
    build_report(run_dir, ["md"], tmp_path / "current")
    assert "predates" not in (tmp_path / "current" / "summary.md").read_text()


def test_reports_handle_diverged_gradient_statistics_and_missing_z_scores(run_dir, tmp_path):
    """A run whose gradient statistics diverged, or lack bias z-scores, used to crash the
    report with KeyError: 'bias_z_max'."""
    odd = tmp_path / "odd"
    odd.mkdir()
    (odd / "results.db").write_bytes((run_dir / "results.db").read_bytes())
    with sqlite3.connect(odd / "results.db") as db:
        db.execute("DELETE FROM metrics WHERE name = 'bias_z_max'")
        db.execute("UPDATE cells SET status = 'diverged', reason = 'non-finite gradient statistics (variance_mean)' "
                   "WHERE kind = 'gradstats' AND estimator = 'rloo'")
    build_report(odd, ["html", "csv"], tmp_path / "report")
    page = (tmp_path / "report" / "index.html").read_text()
    assert "non-finite gradient statistics (variance_mean)" in page


def test_a_configurations_options_go_beneath_its_name_on_the_leaderboard_and_wrap_in_panel_titles():
    """Long option lists took half the leaderboard's width and overran neighbouring panels."""
    from dgbench.reports.figures import TITLE_CHARACTERS, panel_title
    from dgbench.reports.page import config_html

    config = "sbn-two-layer(batch_size=8, dataset=digits, eval_examples=300, eval_splits=test, iw_samples=20, units=6)"
    assert config_html(config) == ("sbn-two-layer<span class='options'>(batch_size=8, dataset=digits, "
                                   "eval_examples=300, eval_splits=test, iw_samples=20, units=6)</span>")
    assert config_html("gmm-cavi") == "gmm-cavi" and "&lt;" in config_html("a<b")
    lines = panel_title(config).split("\n")
    assert len(lines) > 1 and all(len(line) <= TITLE_CHARACTERS for line in lines)
    assert " ".join(lines) == config

def test_an_interval_is_set_beneath_its_mean_with_each_bound_kept_whole():
    """Nowrap intervals such as [0.003091, 0.004013] set quick's tables 40 px wider than a
    1280 px window; the two bounds may now go on two lines, but a bound is never split."""
    from dgbench.reports.page import _cell_html

    cell = _cell_html("0.5 [0.003091, 0.004013]")
    assert cell.startswith("0.5<span class='ci interval'>")
    assert re.findall(r"<span>([^<]*)</span>", cell) == ["[0.003091,", "0.004013]"]
    assert _cell_html("-1 [-2, -0.5]\nsecond line").endswith("<span class='ci'>second line</span>")
    assert _cell_html("1 [odd]") == "1<span class='ci'>[odd]</span>"  # no comma: one line as before
    assert "&lt;" in _cell_html("1 [<a, b>]")



def test_a_score_evaluated_once_is_drawn_as_ranked_intervals_not_one_point_per_line():
    """quick's data problems evaluate only at their last step: a line plot stacked every
    estimator on one x; each gets a row, the best at the top, with its 95% interval."""
    import matplotlib.pyplot as plt

    from dgbench.reports.figures import _draw_dots

    def point(mean: float) -> pd.DataFrame:
        return pd.DataFrame({"x": [100.0], "mean": [mean], "half": [0.1]}, index=pd.Index([100], name="step"))

    curves = {"a": point(1.0), "b": point(2.0), "exact": point(3.0)}
    fig, ax = plt.subplots()
    _draw_dots(ax, curves, ["b", "a", "exact"], {"exact"})
    rows = dict(zip([t.get_text() for t in ax.get_yticklabels()], ax.get_yticks()))
    assert set(rows) == {"1. b", "2. a"} and rows["1. b"] > rows["2. a"]
    drawn = {round(float(line.get_xdata()[0]), 6) for line in ax.lines}
    assert {1.0, 2.0, 3.0} <= drawn  # both estimators and the reference's vertical line
    plt.close(fig)


def test_each_leaderboard_row_links_to_its_configurations_details(run_dir, tmp_path):
    build_report(run_dir, ["html"], tmp_path / "report")
    page = (tmp_path / "report" / "index.html").read_text()
    board = page[page.index("<table class='board'>"):page.index("</table>", page.index("<table class='board'>"))]
    links = re.findall(r"<td class='config'><a href='#([^']+)'>", board)
    assert len(links) >= 2 and len(set(links)) == len(links)
    for anchor in links:
        assert page.count(f"id='{anchor}'") == 1
    assert page.count("href='#leaderboard'>↑ leaderboard</a>") == len(links)


def test_each_configuration_shows_its_own_panels_above_its_table(run_dir, tmp_path):
    """The score, time-to-target and variance-vs-cost panels of a configuration sit in its
    details section (one screen per configuration), each cut out of the whole figure at a
    box of its own: inside the image, overlapping no other panel of the figure, and
    holding the panel's axes (its pixels are not blank)."""
    from dgbench.reports.page import BESIDE_TABLES

    build_report(run_dir, ["html"], tmp_path)
    page = (tmp_path / "index.html").read_text()
    sections = re.split(r"<h3 id='config-", page[page.index("id='details'"):page.index("id='figures'")])[1:]
    assert len(sections) >= 2
    for section in sections:
        config = html.unescape(section[section.index("'>") + 2:section.index(" <a class='muted'")])
        shown = re.findall(r'<img alt="([^":]+): ([^"]+)" title=', section)
        assert shown and {c for _, c in shown} == {config}, (config, shown)
        assert {name for name, _ in shown} <= set(BESIDE_TABLES)
        assert section.index("<div class='panels'>") < section.index("<table")
    for name in BESIDE_TABLES:
        boxes = [tuple(map(int, b.split(","))) for b in re.findall(rf'data-figure="{name}" data-box="([^"]+)"', page)]
        if not boxes:
            continue
        image = np.asarray(Image.open(tmp_path / "figures" / f"{name}.png").convert("L"))
        for i, (left, top, right, bottom) in enumerate(boxes):
            assert 0 <= left < right <= image.shape[1] and 0 <= top < bottom <= image.shape[0]
            assert (image[top:bottom, left:right] < 128).mean() > 0.01  # ink: axes, ticks, labels
            for other in boxes[i + 1:]:
                assert other[0] >= right or other[2] <= left or other[1] >= bottom or other[3] <= top, (name, other)
    whole = re.findall(r"<a href='figures/([^']+)'>", page)
    assert whole and all((tmp_path / "figures" / f).is_file() for f in whole)  # the whole figures stay linked


def test_panel_boxes_that_overlap_are_cut_at_the_middle_and_others_left_alone():
    from dgbench.reports.figures import _disjoint

    apart = {"a": (0, 0, 10, 10), "b": (20, 0, 30, 10)}
    assert _disjoint(apart) == apart
    side = _disjoint({"a": (0, 0, 14, 10), "b": (10, 0, 30, 10)})  # 4 px over, side by side: cut at x = 12
    assert side == {"a": (0, 0, 12, 10), "b": (12, 0, 30, 10)}
    stacked = _disjoint({"a": (0, 0, 30, 12), "b": (0, 8, 30, 20)})  # 4 px over, one above the other
    assert stacked == {"a": (0, 0, 30, 10), "b": (0, 10, 30, 20)}


def test_panel_boxes_hold_their_own_axes_and_none_of_the_others():
    """Four panels filled with four colours: each box holds its panel's whole face (the
    y axis of a PNG runs down, matplotlib's up) and no pixel of another's."""
    import matplotlib.pyplot as plt

    from dgbench.reports.figures import DPI, panel_boxes

    colours = {"top left": (255, 0, 0), "top right": (0, 160, 0), "bottom left": (0, 0, 255), "bottom right": (200, 0, 200)}
    fig, axes = plt.subplots(2, 2, figsize=(6, 4.5))
    for ax, (name, rgb) in zip(axes.ravel(), colours.items()):
        ax.set_facecolor([c / 255 for c in rgb])
        ax.set_title(name)
        ax.set_gid(name)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, dpi=DPI, format="png")
    image = Image.open(buffer).convert("RGB")
    boxes = panel_boxes(fig, image.size)
    plt.close(fig)
    pixels = np.asarray(image).reshape(-1, 3)
    for name, rgb in colours.items():
        inside = np.asarray(image.crop(boxes[name])).reshape(-1, 3)
        mine = (inside == rgb).all(1).sum()
        assert mine == (pixels == rgb).all(1).sum()  # the whole face
        for other, colour in colours.items():
            if other != name:
                assert not (inside == colour).all(1).any(), (name, other)
