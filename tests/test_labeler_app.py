"""Every studio page through Streamlit's AppTest, on a real tiny dataset and store."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from core.curation.store import Store, default_url
from tests.conftest import ROOT

streamlit_testing = pytest.importorskip("streamlit.testing.v1")
APP = str(ROOT / "apps" / "labeler" / "app.py")


@pytest.fixture
def studio(dataset_copy, acne_folder, tmp_path, monkeypatch):
    runs = tmp_path / "runs"
    for name, miou in (("v1", 0.4), ("v2", 0.5)):
        (runs / name).mkdir(parents=True)
        pd.DataFrame({"epoch": [1, 2], "loss": [1.0, 0.8], "val_miou": [miou - 0.1, miou], "iou_acne": [0.5, 0.6]}).to_csv(
            runs / name / "metrics.csv", index=False)
        (runs / name / "eval-acne.json").write_text(json.dumps({"recall": miou / 2, "spearman": 0.5}))
    monkeypatch.setenv("GLOWAI_LABELER_DATA", str(dataset_copy))
    monkeypatch.setenv("GLOWAI_LABELER_DB", default_url(dataset_copy))
    monkeypatch.setenv("GLOWAI_LABELER_EVAL", str(acne_folder))
    monkeypatch.setenv("GLOWAI_LABELER_RUNS", str(runs))
    return dataset_copy


def open_page(page: str) -> streamlit_testing.AppTest:
    app = streamlit_testing.AppTest.from_file(APP, default_timeout=120)
    app.run()
    if page != "review":
        app.switch_page(f"views/{page}.py")
        app.run()
    assert not app.exception, [e.value for e in app.exception]
    return app


def store_of(root) -> Store:
    return Store(default_url(root), root)


def test_review_decides_filters_and_bulk_actions(studio):
    app = open_page("review")
    assert app.title[0].value == "Review"
    focus = app.subheader[0].value.removeprefix("In focus: ")
    app.button(key="review_accept").click().run()
    with store_of(studio) as store:
        assert store.statuses().set_index("sample_id").loc[focus, "status"] == "accepted"
    app.multiselect(key="review_statuses").set_value(["unreviewed"]).run()
    assert "11" in app.caption[0].value  # 11 of 12 still to review
    app.checkbox(key="review_bulk_sure").check().run()
    app.radio(key="review_bulk_action").set_value("rejected").run()
    app.checkbox(key="review_bulk_sure").check().run()
    app.button(key="review_bulk_go").click().run()
    assert not app.exception
    with store_of(studio) as store:
        statuses = store.statuses()["status"].value_counts().to_dict()
        assert statuses == {"accepted": 1, "rejected": 11}
        assert store.audit_log()["action"].tolist()[0] == "rejected"


def test_inspect_saves_a_touch_up_as_a_revision(studio):
    app = open_page("inspect")
    components = app.multiselect(key="inspect_delete").options
    if not components:  # the first sample has no component: pick one that does
        pytest.skip("first sample without components")
    app.multiselect(key="inspect_delete").set_value([components[0]]).run()
    app.button(key="inspect_save").click().run()
    assert not app.exception
    sample = app.selectbox(key="inspect_sample").value
    with store_of(studio) as store:
        revisions = store.revisions(sample)
        assert revisions["revision"].tolist() == [1] and revisions["operation"].item().startswith("delete ")
        assert (studio / revisions["path"].item()).is_file()


def test_stats_page_draws_its_charts(studio):
    app = open_page("stats")
    assert app.title[0].value == "Dataset stats" and "12 samples" in app.caption[0].value
    assert len(app.get("plotly_chart")) == 4


def test_error_analysis_runs_shows_metrics_and_saves_failure_tags(studio):
    app = open_page("errors")
    app.selectbox(key="errors_model").set_value("baseline:redspot").run()
    app.button(key="errors_run").click().run()
    assert not app.exception, [e.value for e in app.exception]
    metrics = {m.label: m.value for m in app.metric}
    assert metrics["lesion recall"] == "1.0" and metrics["no face: whole frame"] == "0"
    assert (studio / "error-analysis" / "baseline-redspot__acne04-like.json").is_file()
    assert len(app.get("plotly_chart")) == 1  # the confusion matrix
    key = "errors_tags_levle2_1.jpg"
    app.multiselect(key=key).set_value(["lighting"]).run()
    app.button(key="errors_save_levle2_1.jpg").click().run()
    with store_of(studio) as store:
        assert store.failure_tags("baseline-redspot__acne04-like")["tag"].tolist() == ["lighting"]


def test_compare_shows_two_runs(studio):
    app = open_page("compare")
    table = app.dataframe[0].value
    assert list(table.columns) == ["metric", "A: v1", "B: v2"] and table.iloc[0]["B: v2"] == 0.5
    assert len(app.get("plotly_chart")) == 1 and len(app.dataframe) == 2


def test_export_writes_a_version_and_a_report(studio):
    with store_of(studio) as store:
        ids = pd.read_parquet(studio / "manifest.parquet")["id"].tolist()[:3]
        store.decide(ids, "accepted", "ana")
    app = open_page("export")
    app.button(key="export_go").click().run()
    assert not app.exception
    assert (studio / "versions" / "v1" / "manifest.parquet").is_file()
    app.button(key="export_report").click().run()
    reports = list((studio / "reports").glob("report-*.html"))
    assert len(reports) == 1 and "GlowAI studio report" in reports[0].read_text()


def test_without_a_dataset_the_studio_says_how_to_start(monkeypatch):
    monkeypatch.delenv("GLOWAI_LABELER_DATA", raising=False)
    app = streamlit_testing.AppTest.from_file(APP, default_timeout=60)
    app.run()
    assert "glowai labeler --data DIR" in app.error[0].value


def test_a_hostile_manifest_path_is_refused_not_followed(studio):
    manifest = pd.read_parquet(studio / "manifest.parquet")
    manifest.loc[0, "image"] = "../../../../etc/passwd"
    manifest.to_parquet(studio / "manifest.parquet", index=False)
    app = open_page("review")
    assert any("outside the dataset folder" in w.value for w in app.warning)
