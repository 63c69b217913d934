"""Classical SDD baselines: texture features, the If-Then rule table, PNN, SVM, MLP and the sdd-history run."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import typer
from rich.console import Console
from skimage.feature import local_binary_pattern
from typer.testing import CliRunner

from steelscan.cli.benchmark import benchmark_app
from steelscan.core.errors import DataError, SteelscanError
from steelscan.data.neu import neu_split
from steelscan.evaluation.sdd_history import COLUMNS, load_neu_cls_images, run_sdd_history
from steelscan.models.classical import (
    N_FEATURES,
    MLPBaseline,
    PNNClassifier,
    RuleTableClassifier,
    SVMClassifier,
    create_classical,
    extract_batch,
    extract_features,
    feature_names,
)
from steelscan.models.classical.features import lbp_uniform
from tests.conftest import shared_data

RNG = np.random.default_rng(0)


def _texture(kind: str, rng: np.random.Generator, size: int = 64) -> np.ndarray:
    """Synthetic grey textures: 'stripes' (oriented sine), 'blobs' (smooth bumps), 'noise' (white)."""
    yy, xx = np.mgrid[:size, :size].astype(np.float64)
    if kind == "stripes":
        angle, freq = rng.uniform(0, np.pi), rng.uniform(0.25, 0.5)
        img = 128 + 80 * np.sin(freq * (np.cos(angle) * xx + np.sin(angle) * yy) + rng.uniform(0, 2 * np.pi))
    elif kind == "blobs":
        img = np.full((size, size), 60.0)
        for _ in range(6):
            cy, cx, r = rng.uniform(0, size, 2).tolist() + [rng.uniform(4, 9)]
            img += 150 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r))
    else:
        img = rng.uniform(0, 255, (size, size))
    return np.clip(img + rng.normal(0, 6, (size, size)), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def synthetic_set() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    kinds = ("stripes", "blobs", "noise")
    images = [_texture(k, rng) for k in kinds for _ in range(18)]
    labels = np.repeat(np.arange(3), 18)
    X = extract_batch(images)
    test = np.arange(len(labels)) % 3 == 0
    return X[~test], labels[~test], X[test], labels[test]


# ---------------------------------------------------------------- features


def test_feature_vector_length_names_and_finiteness() -> None:
    names = feature_names()
    assert len(names) == N_FEATURES == len(set(names)) == 140
    for image in (_texture("noise", RNG, 200), np.zeros((20, 20), np.uint8), np.full((9, 31), 255, np.uint8)):
        vec = extract_features(image)
        assert vec.shape == (N_FEATURES,) and vec.dtype == np.float32
        assert np.isfinite(vec).all()


def test_features_differ_between_smooth_and_textured() -> None:
    yy, xx = np.mgrid[:200, :200]
    smooth = (60 + 0.5 * xx + 0.2 * yy).astype(np.uint8)
    textured = _texture("noise", RNG, 200)
    a, b = extract_features(smooth), extract_features(textured)
    named = dict(zip(feature_names(), zip(a, b)))
    assert named["glcm_contrast_d1"][0] < named["glcm_contrast_d1"][1]
    assert named["glcm_homogeneity_d1"][0] > named["glcm_homogeneity_d1"][1]
    assert named["int_entropy"][0] < named["int_entropy"][1]
    assert np.abs(a - b).sum() > 1.0


def test_batch_matches_single_and_threads() -> None:
    images = [_texture(k, RNG) for k in ("stripes", "blobs", "noise") * 6]
    one = extract_batch(images, n_jobs=1)
    two = extract_batch(images, n_jobs=2)
    assert one.shape == (18, N_FEATURES)
    np.testing.assert_array_equal(one, two)
    np.testing.assert_array_equal(one[4], extract_features(images[4]))
    assert extract_batch(np.stack(images[:3])).shape == (3, N_FEATURES)
    assert extract_batch([]).shape == (0, N_FEATURES)


def test_lbp_matches_skimage() -> None:
    image = RNG.integers(0, 256, (40, 57)).astype(np.uint8)
    np.testing.assert_array_equal(lbp_uniform(image, 8, 1), local_binary_pattern(image, 8, 1, "uniform"))
    agree = np.mean(lbp_uniform(image, 16, 2) == local_binary_pattern(image, 16, 2, "uniform"))
    assert agree > 0.99


@pytest.mark.parametrize(
    ("image", "match"),
    [
        (np.zeros((32, 32, 3), np.uint8), "2-D grey"),
        (np.zeros((32, 32), np.float32), "uint8"),
        (np.zeros((4, 32), np.uint8), "at least"),
        ([[1, 2], [3, 4]], "numpy array"),
    ],
)
def test_bad_images_raise_value_error(image: object, match: str) -> None:
    with pytest.raises(SteelscanError, match=match):
        extract_features(image)  # type: ignore[arg-type]


def test_batch_names_the_bad_image() -> None:
    with pytest.raises(SteelscanError, match="image 1"):
        extract_batch([np.zeros((20, 20), np.uint8), np.zeros((20, 20, 3), np.uint8)])
    with pytest.raises(SteelscanError, match="n_jobs"):
        extract_batch([np.zeros((20, 20), np.uint8)], n_jobs=0)


# ---------------------------------------------------------------- rule table


# Class A ranges by hand: f0 in [0, 2], f1 in [0, 2]; class B: f0 in [1, 3], f1 in [5, 7].
RULE_X = np.array([[0.0, 0.0], [2.0, 2.0], [1.0, 1.0], [1.0, 5.0], [3.0, 7.0]])
RULE_Y = np.array(["A", "A", "A", "B", "B"])


def test_rule_table_learns_min_max_ranges() -> None:
    model = RuleTableClassifier().fit(RULE_X, RULE_Y)
    np.testing.assert_array_equal(model.alpha_, [[0, 0], [1, 5]])
    np.testing.assert_array_equal(model.beta_, [[2, 2], [3, 7]])
    robust = RuleTableClassifier(percentiles=(5, 95)).fit(RULE_X, RULE_Y)
    np.testing.assert_allclose(robust.alpha_[0], [0.1, 0.1])  # linear percentile of {0, 1, 2}
    np.testing.assert_allclose(robust.beta_[1], [2.9, 6.9])  # of {1, 3} and {5, 7}


def test_rule_table_votes_and_predictions_by_hand() -> None:
    model = RuleTableClassifier().fit(RULE_X, RULE_Y)
    queries = np.array([[1.5, 1.0], [2.5, 6.0], [1.5, 6.0], [2.0, 2.0]])
    # [1.5,1]: A both, B f0 only. [2.5,6]: B both. [1.5,6]: A f0, B both. [2,2]: bounds count as inside.
    np.testing.assert_array_equal(model.votes(queries), [[2, 1], [0, 2], [1, 2], [2, 1]])
    assert model.predict(queries).tolist() == ["A", "B", "B", "A"]


def test_rule_table_ties_are_deterministic() -> None:
    # [2.5, 1]: A has f1, B has f0: 1-1. [3.5, 4.5]: no range holds either feature: 0-0.
    # Misses in range widths: [3.5, 4.5] -> A 1.5/2 + 2.5/2 = 2.0, B 0.5/2 + 0.5/2 = 0.5.
    ties = np.array([[2.5, 1.0], [3.5, 4.5]])
    first = RuleTableClassifier().fit(RULE_X, RULE_Y)
    assert first.predict(ties).tolist() == ["A", "A"]
    assert first.tie_rate(ties) == 1.0
    nearest = RuleTableClassifier(tie_break="distance").fit(RULE_X, RULE_Y)
    assert nearest.predict(ties).tolist() == ["A", "B"]  # [2.5,1]: A misses by 0.25, B by 2.0


def test_rule_table_bad_input() -> None:
    with pytest.raises(SteelscanError, match="not fitted"):
        RuleTableClassifier().predict(RULE_X)
    with pytest.raises(SteelscanError, match="5 rows, y has 4"):
        RuleTableClassifier().fit(RULE_X, RULE_Y[:4])
    with pytest.raises(SteelscanError, match="percentiles"):
        RuleTableClassifier(percentiles=(90, 10)).fit(RULE_X, RULE_Y)
    with pytest.raises(SteelscanError, match="tie_break"):
        RuleTableClassifier(tie_break="random").fit(RULE_X, RULE_Y)
    model = RuleTableClassifier().fit(RULE_X, RULE_Y)
    with pytest.raises(SteelscanError, match="2 features"):
        model.predict(np.zeros((1, 3)))
    with pytest.raises(SteelscanError, match="finite"):
        model.predict(np.array([[np.nan, 1.0]]))
    with pytest.raises(SteelscanError, match="2-D"):
        model.predict(np.zeros(2))
    with pytest.raises(SteelscanError, match="2 classes"):
        RuleTableClassifier().fit(RULE_X, ["A"] * 5)


# ---------------------------------------------------------------- PNN


def test_pnn_posterior_formula_and_ordering_1d() -> None:
    X = np.array([[0.0], [1.0], [3.0]])
    y = np.array([0, 0, 1])
    model = PNNClassifier(sigma=0.5).fit(X, y)
    queries = np.array([[0.5], [1.8], [2.8]])
    proba = model.predict_proba(queries)
    # By hand, in standardised units: f_c = mean over the class of exp(-d^2 / (2 sigma^2)).
    z, q = (X[:, 0] - X.mean()) / X.std(), (queries[:, 0] - X.mean()) / X.std()
    k = np.exp(-((q[:, None] - z[None]) ** 2) / (2 * 0.5**2))
    f = np.stack([k[:, :2].mean(1), k[:, 2:].mean(1)], axis=1)
    np.testing.assert_allclose(proba, f / f.sum(1, keepdims=True), rtol=1e-10)
    assert proba[0, 0] > proba[1, 0] > proba[2, 0]
    assert model.predict(queries)[[0, 2]].tolist() == [0, 1]


def test_pnn_small_sigma_is_nearest_neighbour() -> None:
    rng = np.random.default_rng(3)
    X, y = rng.normal(size=(40, 3)), rng.integers(0, 3, 40)
    queries = rng.normal(size=(25, 3)) * 3  # far ones too: every kernel underflows without log-space scores
    model = PNNClassifier(sigma=1e-4).fit(X, y)
    zx, zq = (X - X.mean(0)) / X.std(0), (queries - X.mean(0)) / X.std(0)
    nearest = y[np.argmin(((zq[:, None] - zx[None]) ** 2).sum(-1), axis=1)]
    np.testing.assert_array_equal(model.predict(queries), nearest)
    assert np.isfinite(model.predict_proba(queries)).all()


def test_pnn_chooses_sigma_by_leave_one_out(synthetic_set) -> None:
    X_tr, y_tr, X_te, y_te = synthetic_set
    model = PNNClassifier().fit(X_tr, y_tr)
    assert model.sigma_ in model.loo_scores_ and len(model.loo_scores_) == 21
    assert model.loo_scores_[model.sigma_] == max(model.loo_scores_.values())
    assert (model.predict(X_te) == y_te).mean() > 0.8
    with pytest.raises(SteelscanError, match="sigma"):
        PNNClassifier(sigma=-1.0).fit(X_tr, y_tr)
    with pytest.raises(SteelscanError, match="not fitted"):
        PNNClassifier().predict_proba(X_te)


# ---------------------------------------------------------------- SVM, MLP, factory


@pytest.mark.parametrize("name", ["svm", "mlp", "rule_table", "pnn"])
def test_every_method_beats_chance_on_synthetic_textures(synthetic_set, name: str) -> None:
    X_tr, y_tr, X_te, y_te = synthetic_set
    model = create_classical(name).fit(X_tr, y_tr)
    assert (model.predict(X_te) == y_te).mean() >= 0.8  # chance is 1/3
    if hasattr(model, "predict_proba"):
        proba = model.predict_proba(X_te)
        assert proba.shape == (len(X_te), 3)
        np.testing.assert_allclose(proba.sum(1), 1.0, rtol=1e-6)


def test_svm_search_and_errors(synthetic_set) -> None:
    X_tr, y_tr, X_te, _ = synthetic_set
    model = SVMClassifier(C_grid=(1.0, 10.0), gamma_grid=(1.0,), cv=3).fit(X_tr, y_tr)
    assert model.best_params_["C"] in (1.0, 10.0) and 0.0 <= model.cv_accuracy_ <= 1.0
    with pytest.raises(SteelscanError, match="not fitted"):
        SVMClassifier().predict(X_te)
    with pytest.raises(SteelscanError, match="features"):
        model.predict(X_te[:, :5])
    with pytest.raises(SteelscanError, match="probability=False"):
        SVMClassifier(probability=False, C_grid=(1.0,), gamma_grid=(1.0,), cv=2).fit(X_tr, y_tr).predict_proba(X_te)
    with pytest.raises(SteelscanError, match="as many labels"):
        MLPBaseline().fit(X_tr, y_tr[:-1])


def test_factory_builds_each_and_lists_names_on_error() -> None:
    assert isinstance(create_classical("rule_table"), RuleTableClassifier)
    assert isinstance(create_classical("pnn", sigma=1.0), PNNClassifier)
    assert isinstance(create_classical("svm"), SVMClassifier)
    assert isinstance(create_classical("mlp"), MLPBaseline)
    with pytest.raises(SteelscanError, match="rule_table, pnn, svm, mlp") as info:
        create_classical("knn")
    assert "'knn'" in str(info.value)
    with pytest.raises(SteelscanError, match="bad arguments"):
        create_classical("pnn", bandwidth=2.0)


# ---------------------------------------------------------------- sdd-history


def test_neu_split_rule() -> None:
    assert [neu_split(n) for n in (1, 2, 3, 4, 6, 9, 299)] == ["train"] * 3 + ["val", "train", "val", "val"]
    for bad in (5, 300, 0, -4):
        with pytest.raises(SteelscanError):
            neu_split(bad)


def test_missing_data_folder_is_one_line_error(tmp_path) -> None:
    with pytest.raises(DataError, match="NEU-CLS folder not found") as info:
        run_sdd_history(tmp_path / "absent", json_out=None, show_progress=False)
    assert "\n" not in str(info.value)
    with pytest.raises(SteelscanError, match="expected NEU-CLS images.*found none"):
        load_neu_cls_images(tmp_path)


def test_cli_sub_app() -> None:
    app = typer.Typer()  # mounted as the lead will: app.add_typer(benchmark_app, name="benchmark")
    app.add_typer(benchmark_app, name="benchmark")
    runner = CliRunner()
    assert "sdd-history" in runner.invoke(app, ["benchmark", "--help"]).output
    assert "--seed" in runner.invoke(app, ["benchmark", "sdd-history", "--help"]).output
    args = ["benchmark", "sdd-history", "--data", "/nonexistent/neu-cls", "--json", "x.json"]
    result = runner.invoke(app, args)
    assert isinstance(result.exception, DataError)  # steelscan's main() prints it on one line


def test_sdd_history_on_real_subset(tmp_path) -> None:
    root = shared_data("neu-cls")
    out = tmp_path / "sdd.json"
    buffer = io.StringIO()
    result = run_sdd_history(
        root, json_out=out, per_class=20, n_jobs=1, show_progress=False, console=Console(file=buffer, width=120)
    )
    saved = json.loads(out.read_text())
    assert saved == json.loads(json.dumps(result))
    assert saved["split"]["n_train"] == 90 and saved["split"]["n_val"] == 30  # numbers 1..24: 4,9,14,19,24 val
    keys = [row["key"] for row in saved["rows"]]
    assert keys == ["visual", "rule_table", "rule_table_p5_95", "pnn", "svm", "mlp"]
    for row in saved["rows"]:
        assert set(COLUMNS) <= set(row)
        if row["key"] == "visual":
            assert row["accuracy"] is None and row["seed_figure"] == "70-80%"
        else:
            assert 0.0 <= row["accuracy"] <= 1.0 and row["ms_per_image"] > 0
    text = buffer.getvalue()
    assert "SVM (RBF)" in text and "87-94%" in text
