"""Every surface of the run settings derives from, or is checked against, the one declaration.

A surface that lacks a declared setting, or has one that is not declared, fails here: the API
schema, the app's pyproject defaults, the Start form's source (no hand-kept field lists), the
CLI flags and README's table. Also: the presets are valid configurations, the x-* schema
contract the form relies on, one list each of strategies, models and run statuses, and the
Krum defaults on the default 3-node federation.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from flowerbed.cli import build_parser
from flowerbed.runs.run_config import API_SETTINGS, PRESETS, TrainingConfig, training_schema
from flowerbed.settings_surfaces import BEGIN, END, markdown_table, with_app_config
from flowerbed_app import run_choices
from flowerbed_app import run_settings as rs
from flowerbed_app.run_settings import SETTINGS, RunSettings, SettingsError

ROOT = Path(__file__).resolve().parents[2]
API_NAMES = {item.name for item in API_SETTINGS}


def test_the_api_schema_has_exactly_the_declared_settings_with_the_form_contract():
    schema = training_schema()
    assert set(schema["properties"]) == API_NAMES
    groups = [g["title"] for g in schema["x-groups"]]
    for name, prop in schema["properties"].items():
        assert prop["x-label"] and isinstance(prop["x-advanced"], bool), name
        assert prop["x-group"] in groups, name
        for other, values in prop.get("x-when", {}).items():
            assert other in API_NAMES and values, (name, other)
            controller = rs.BY_KEY[other.replace("_", "-")]
            choices = (True, False) if controller.kind is bool else controller.spec.choices
            assert choices is not None and set(values) <= set(choices), (name, other, values)
    assert schema["properties"]["krum_num_malicious"]["x-when"] == {"strategy": ["krum"]}
    assert schema["properties"]["dp_noise_multiplier"]["x-when"] == {"dp": ["local", "central"]}
    assert schema["properties"]["proximal_mu"]["x-label"] == "FedProx μ"


def test_the_app_pyproject_declares_exactly_the_settings_with_their_defaults():
    """Flower drops an override whose key its pyproject lacks: the section is generated, and must be current."""
    text = (ROOT / "services/flowerapp/pyproject.toml").read_text()
    assert text == with_app_config(text), "stale [tool.flwr.app.config]: `.venv/bin/python -m flowerbed.settings_surfaces`"
    config = tomllib.loads(text)["tool"]["flwr"]["app"]["config"]
    declared = {item.key: item.default for item in SETTINGS}
    assert set(config) == set(declared), set(config) ^ set(declared)
    for key, value in config.items():
        assert value == declared[key] and type(value) is type(declared[key]), (key, value, declared[key])


def test_the_cli_has_one_flag_per_api_setting_and_no_other_setting_flag():
    train = build_parser()._subparsers._group_actions[0].choices["train"]
    flags = {opt for action in train._actions for opt in action.option_strings}
    federation_flags = {"-h", "--help", "--nodes", "--node-data", "--superlink-port", "--supernode-port", "--data-dir"}
    own_flags = {"--set", "--allow-waiting", "--json", "--rounds"}  # --rounds: the older spelling of --num-rounds
    setting_flags = flags - federation_flags - own_flags
    assert setting_flags == {item.flag for item in API_SETTINGS}
    args = build_parser().parse_args(["train", "--rounds", "2", "--learning-rate", "0.05", "--strategy", "krum"])
    assert (args.num_rounds, args.learning_rate, args.strategy) == (2, 0.05, "krum")


def test_readme_table_is_the_generated_one():
    readme = (ROOT / "README.md").read_text()
    table = readme.split(BEGIN, 1)[1].split(END, 1)[0].strip()
    assert table == markdown_table(), "README's run-settings table is stale: `.venv/bin/python -m flowerbed.settings_surfaces`"
    rows = {m.group(1) for m in re.finditer(r"^\| `(\w+)` \|", table, re.M)}
    assert rows == API_NAMES


def test_the_start_form_keeps_no_list_of_fields():
    """The form is built from the schema alone: its source names no setting (its tests check the DOM has them all)."""
    sources = [*sorted((ROOT / "services/web/src/views").glob("start*.ts")), ROOT / "services/web/src/schema_fields.ts"]
    form = "".join(path.read_text() for path in sources)
    used_for_behaviour = {"num_rounds", "from_checkpoint"}  # the duration estimate; resume from a checkpoint
    named = {name for name in API_NAMES if re.search(rf"[\"'.]{name}\b", form)}
    assert named <= used_for_behaviour, named - used_for_behaviour


@pytest.mark.parametrize("preset", PRESETS, ids=[p.name for p in PRESETS])
def test_each_preset_is_a_valid_configuration(preset):
    assert set(preset.config) <= API_NAMES
    config = TrainingConfig.model_validate(preset.config)
    settings = config.validate_domain()
    assert RunSettings.from_run_config(settings.to_run_config()).num_rounds == preset.config["num_rounds"]


def test_one_list_of_strategies_models_and_statuses():
    from flowerbed.db import tables as db
    from flowerbed.runs.run_status import RUN_STATUSES, TERMINAL_STATUSES
    from flowerbed_app.strategy.strategies import STRATEGIES
    from flowerbed_app.task.networks import MODEL_FACTORIES

    assert tuple(STRATEGIES) == run_choices.STRATEGIES
    assert tuple(MODEL_FACTORIES) == run_choices.MODELS == tuple(run_choices.MODEL_INPUT)
    assert db.TERMINAL_STATUSES is TERMINAL_STATUSES
    web = (ROOT / "services/web/src/api.ts").read_text()
    listed = re.search(r"RUN_STATUSES: RunStatus\[\] = \[([^\]]*)\]", web)
    assert listed and tuple(re.findall(r'"(\w+)"', listed.group(1))) == RUN_STATUSES


def test_krum_defaults_work_on_the_default_three_node_federation():
    """strategy=krum alone (min_nodes=2, f=0) is accepted; too few nodes for f says how to fix it, never f < 0."""
    TrainingConfig.model_validate({"strategy": "krum"}).validate_domain()
    RunSettings.from_run_config({"strategy": "krum", "min-nodes": 3, "min-available-nodes": 3})
    with pytest.raises(SettingsError) as err:
        RunSettings.from_run_config({"strategy": "krum", "krum-num-malicious": 1, "min-nodes": 4, "min-available-nodes": 4})
    assert err.value.key == "krum-num-malicious"
    assert "raise min-nodes (and min-available-nodes) to 5" in err.value.reason
    assert "set krum-num-malicious to 0" in err.value.reason and "to -" not in err.value.reason
    with pytest.raises(SettingsError) as err:
        RunSettings.from_run_config({"strategy": "krum", "krum-num-malicious": 3, "min-nodes": 7, "min-available-nodes": 7})
    assert "lower krum-num-malicious to 2" in err.value.reason


def test_old_run_config_spellings_still_work():
    """`num-server-rounds` is Flower's key; `--set num-rounds=…` (the API name, kebab) is accepted too."""
    assert RunSettings.from_run_config({"num-server-rounds": 4}).num_rounds == 4
    assert RunSettings.from_run_config({"num-rounds": 5}).num_rounds == 5
    assert RunSettings.from_run_config({"resume-from": "abc"}).from_checkpoint == "abc"
    assert (
        TrainingConfig.model_validate({"num_rounds": 2, "from_checkpoint": None})
        .validate_domain()
        .to_run_config()["num-server-rounds"]
        == 2
    )
