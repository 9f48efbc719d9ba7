"""The registry as users drive it: register, load by models:/ URI, gates, promotion, lineage."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import keel
from keel.cli.main import app
from keel.entities import ModelStage
from keel.errors import InvalidParameter, NotFound
from keel.registry import PromotionRefused, parse_models_uri
from keel.registry.gates import parse_gate

np = pytest.importorskip("numpy")
pytest.importorskip("sklearn")

from sklearn.linear_model import LogisticRegression  # noqa: E402


def _data() -> tuple[Any, Any]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(120, 3))
    return x, (x[:, 0] + x[:, 1] > 0).astype(int)


def _logged(f1: float, name: str | None = "churn") -> tuple[str, str]:
    """A run with a model package and an f1 metric; returns (run_id, model URI)."""
    x, y = _data()
    ds = keel.Dataset(name="train", digest="d1g35t", source="train.csv", source_type="local")
    with keel.start_run() as run:
        keel.log_input(ds, context="training")
        keel.log_param("C", 1.0)
        keel.log_metric("f1", f1)
        uri = keel.sklearn.log_model(
            LogisticRegression().fit(x, y),
            "model",
            input_example=x[:5],
            onnx=False,
            registered_model_name=name,
        )
    return run.info.run_id, uri


def test_log_model_registers_numbered_versions_that_load_by_uri(tracking: Path) -> None:
    x, _ = _data()
    run1, _ = _logged(0.8)
    run2, _ = _logged(0.9)
    c = keel.Client()
    v1, v2 = (c.get_model_version("churn", n) for n in (1, 2))
    assert (v1.run_id, v2.run_id) == (run1, run2)
    assert v2.source.endswith("/model")
    expected = keel.models.load(f"runs:/{run2}/model").predict(x[:4]).tolist()
    for uri in ("models:/churn/2", "models:/churn/latest"):
        assert keel.models.load(uri).predict(x[:4]).tolist() == expected
    c.set_registered_model_alias("churn", "champion", 1)
    assert keel.models.load("models:/churn@champion").path == keel.models.resolve_model_uri(
        f"runs:/{run1}/model"
    )
    c.transition_model_version_stage("churn", 2, "production")
    assert keel.models.resolve_model_uri("models:/churn/Production").parent.name == "artifacts"


def test_missing_versions_and_aliases_say_what_exists(tracking: Path) -> None:
    _logged(0.8)
    with pytest.raises(NotFound, match="1"):
        keel.models.load("models:/churn/7")
    with pytest.raises(NotFound, match="alias"):
        keel.models.load("models:/churn@prod")
    with pytest.raises(NotFound):
        keel.models.load("models:/churn/Staging")
    with pytest.raises(InvalidParameter, match="models:/<name>/<version>"):
        parse_models_uri("models:/churn")


def test_register_model_from_a_path_and_from_another_version(
    tracking: Path, tmp_path: Path
) -> None:
    x, y = _data()
    pkg = keel.models.save(LogisticRegression().fit(x, y), tmp_path / "pkg", input_example=x[:5])
    v = keel.register_model(str(pkg), "local-model", tags={"origin": "laptop"})
    assert (v.version, v.run_id, v.source, v.tags) == (1, None, str(pkg), {"origin": "laptop"})
    copy = keel.register_model("models:/local-model/1", "copied")
    assert copy.source == str(pkg)
    with pytest.raises(InvalidParameter, match="no model at"):
        keel.register_model(str(tmp_path), "nothing-here")


def test_gates_refuse_then_pass_and_record_their_report(tracking: Path) -> None:
    _logged(0.80)
    _logged(0.93)
    c = keel.Client()
    c.set_promotion_gates("churn", "production", ["metrics.f1 >= 0.85", "signature", "loads"])
    with pytest.raises(PromotionRefused) as refused:
        c.promote("churn", 1, "production")
    report = refused.value.report
    assert [r.passed for r in report.results] == [False, True, True]
    assert report.results[0].observed == "metrics.f1 = 0.8"
    assert "metrics.f1 >= 0.85" in refused.value.message
    recorded = json.loads(c.get_model_version("churn", 1).tags["keel.gate.production"])
    assert recorded["status"] == "failed"
    with pytest.raises(NotFound):  # refused: the alias was not set
        c.get_model_version_by_alias("churn", "production")
    # Setting the alias directly runs the same gates.
    with pytest.raises(PromotionRefused):
        c.set_registered_model_alias("churn", "production", 1)
    passed = c.promote("churn", 2, "production")
    assert passed.status == "passed"
    assert c.get_model_version_by_alias("churn", "production").version == 2
    # A forced promotion is allowed, with its reason on record.
    forced = c.promote("churn", 1, "production", force_reason="rollback, incident 42")
    assert forced.status == "forced"
    tag = json.loads(c.get_model_version("churn", 1).tags["keel.gate.production"])
    assert tag["forced_reason"] == "rollback, incident 42"
    assert c.get_model_version_by_alias("churn", "production").version == 1
    with pytest.raises(InvalidParameter, match="reason"):
        c.promote("churn", 2, "production", force_reason="  ")


def test_an_alias_without_gates_is_set_directly(tracking: Path) -> None:
    _logged(0.5)
    c = keel.Client()
    c.set_registered_model_alias("churn", "challenger", 1)
    assert c.get_registered_model("churn").aliases == {"challenger": 1}
    assert "keel.gate.challenger" not in c.get_model_version("churn", 1).tags


def test_stage_gates_apply_to_transitions(tracking: Path) -> None:
    _logged(0.5)
    c = keel.Client()
    c.set_promotion_gates("churn", "production", ["metrics.f1 > 0.9"])
    with pytest.raises(PromotionRefused):
        c.transition_model_version_stage("churn", 1, ModelStage.PRODUCTION)
    assert c.transition_model_version_stage("churn", 1, "Staging").current_stage.value == "Staging"


def test_gate_texts_are_validated_when_declared(tmp_path: Path) -> None:
    with pytest.raises(InvalidParameter, match="Unknown gate"):
        parse_gate("accuracy > 0.9")
    with pytest.raises(InvalidParameter, match="at position 13; expected a value"):
        parse_gate("metrics.f1 >= ")
    with pytest.raises(InvalidParameter, match="not a file"):
        parse_gate("verify nowhere.txt", base=tmp_path)
    (tmp_path / "prod.txt").write_text("numpy==2.4.6\nscikit-learn==1.9.1\n")
    gate = parse_gate("verify prod.txt --python 3.11", base=tmp_path)
    assert gate.pins == {"numpy": "2.4.6", "scikit-learn": "1.9.1"}
    assert gate.python == "3.11"


def test_lineage_follows_a_version_to_its_run_data_code_and_checks(tracking: Path) -> None:
    run_id, _ = _logged(0.9)
    lineage = keel.Client().get_model_version_lineage("churn", 1)
    assert lineage["model_version"]["uri"] == "models:/churn/1"
    assert lineage["run"]["run_id"] == run_id
    assert lineage["run"]["params"] == {"C": "1.0"}
    assert lineage["run"]["metrics"] == {"f1": 0.9}
    assert lineage["datasets"] == [
        {
            "name": "train",
            "digest": "d1g35t",
            "source": "train.csv",
            "source_type": "local",
            "context": "training",
        }
    ]
    assert set(lineage["code"]) >= {"git_commit", "git_dirty", "source_name"}
    assert "scikit-learn" in lineage["environment"]["packages"]
    assert {c["name"]: c["ok"] for c in lineage["checks"]}["integrity"] is True
    assert lineage["package"]["provenance"]["run_id"] == run_id
    json.dumps(lineage)  # JSON-ready as it is


def test_cli_registry_round_trip(tracking: Path) -> None:
    _logged(0.95)
    runner = CliRunner()

    def keel_cli(*args: str) -> Any:
        result = runner.invoke(app, list(args))
        return result

    listed = keel_cli("models", "list", "--json")
    assert listed.exit_code == 0, listed.output
    assert [m["name"] for m in json.loads(listed.output)] == ["churn"]
    gates = keel_cli("models", "gates", "churn", "production", "metrics.f1 >= 0.9", "signature")
    assert gates.exit_code == 0, gates.output
    assert "metrics.f1 >= 0.9" in gates.output
    promoted = keel_cli("models", "promote", "churn", "1", "--alias", "production")
    assert promoted.exit_code == 0, promoted.output
    assert "passed" in promoted.output
    keel_cli("models", "gates", "churn", "staging", "metrics.f1 >= 0.99")
    refused = keel_cli("models", "promote", "churn", "1", "--alias", "staging", "--json")
    assert refused.exit_code == 1
    assert json.loads(refused.stdout)["status"] == "failed"
    shown = keel_cli("models", "show", "churn", "--json")
    assert json.loads(shown.output)["aliases"] == {"production": 1}
    lineage = keel_cli("models", "lineage", "churn", "1", "--json")
    assert json.loads(lineage.output)["run"]["metrics"]["f1"] == 0.95
    doctor = keel_cli("models", "doctor", "models:/churn@production")
    assert doctor.exit_code == 0, doctor.output
    staged = keel_cli("models", "stage", "churn", "1", "Staging")
    assert staged.exit_code == 2 and "metrics.f1 >= 0.99" in staged.output  # its gates failed
    staged = keel_cli("models", "stage", "churn", "1", "Production")
    assert "now in stage Production" in staged.output
    deleted = keel_cli("models", "delete", "churn", "--yes")
    assert deleted.exit_code == 0
    assert json.loads(keel_cli("models", "list", "--json").output) == []


@pytest.mark.slow
def test_a_verify_gate_builds_its_target_and_loads_the_version_there(tracking: Path) -> None:
    import shutil

    if shutil.which("uv") is None and __import__("importlib").util.find_spec("uv") is None:
        pytest.skip("verify gates build environments with uv, which is not installed")
    _logged(0.9)
    c = keel.Client()
    package = keel.models.resolve_model_uri("models:/churn/1")
    gates = c.set_promotion_gates("churn", "production", [f"verify {package / 'requirements.txt'}"])
    from keel.models.targets import read_pins

    assert gates[0].pins == read_pins(package / "requirements.txt")  # stored with the gate
    report = c.check_promotion_gates("churn", 1, "production")
    (result,) = report.results
    if not result.passed and "uv" in result.detail and "network" in result.detail.lower():
        pytest.skip(f"cannot build the target environment here: {result.detail}")
    assert result.passed, result.detail
    assert result.observed == "loads (native)"
