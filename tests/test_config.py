import tomllib

import pytest

from moireu.config import (MoireuConfig, apply_override, available_presets, build_config, load_config, preset_dict,
                           save_resolved)
from moireu.errors import InputError


def test_presets_exist_and_validate():
    assert {"demo", "paper"} <= set(available_presets())
    paper = load_config("paper")
    assert paper.lattice.index == 9 and paper.preset == "paper"
    demo = load_config("demo")
    assert demo.lattice.index == 7


def test_overrides_typed_and_validated():
    cfg = load_config("paper", overrides=["hf.U=4.0", "lattice.interlayer_distance=3.35", "stm.biases=[0.0, 0.002]"])
    assert cfg.hf.U == 4.0 and cfg.lattice.interlayer_distance == 3.35 and cfg.stm.biases == (0.0, 0.002)
    with pytest.raises(InputError, match=r"unknown config key 'hf.UU'.*allowed: .*U"):
        load_config("paper", overrides=["hf.UU=1"])
    with pytest.raises(InputError, match=r"invalid value -1.*hf.U"):
        load_config("paper", overrides=["hf.U=-1"])
    with pytest.raises(InputError, match="key=value"):
        load_config("paper", overrides=["hf.U"])
    with pytest.raises(InputError, match="index"):
        load_config("paper", overrides=["lattice.index=0"])
    with pytest.raises(InputError, match="a_cc"):
        load_config("paper", overrides=["lattice.cutoff=1.0"])
    with pytest.raises(InputError, match="duplicate"):
        load_config("demo", overrides=["dataset.U_values=[1.0, 1.0]"])
    with pytest.raises(InputError, match="empty"):
        load_config("demo", overrides=["dataset.U_values=[]"])


def test_unknown_preset_and_bad_toml(tmp_path):
    with pytest.raises(InputError, match="unknown preset 'nope'.*demo"):
        load_config("nope")
    bad = tmp_path / "bad.toml"
    bad.write_text("[lattice\nindex = 3")
    with pytest.raises(InputError, match="not valid TOML"):
        load_config("demo", bad)
    extra = tmp_path / "extra.toml"
    extra.write_text("[lattice]\nfoo = 1\n")
    with pytest.raises(InputError, match="unknown config key 'lattice.foo'"):
        load_config("demo", extra)


def test_resolved_config_round_trip(tmp_path):
    cfg = load_config("paper", overrides=["hf.U=2.5", "seed=7"])
    save_resolved(cfg, tmp_path)
    back = build_config(tomllib.loads((tmp_path / "config.toml").read_text()))
    assert back == cfg
    prov = (tmp_path / "provenance.json").read_text()
    assert "git_commit" in prov and "moireu_version" in prov


def test_presets_never_modified(tmp_path):
    before = preset_dict("paper")
    cfg = load_config("paper", overrides=["hf.U=5.0"])
    save_resolved(cfg, tmp_path)
    assert preset_dict("paper") == before


def test_apply_override_on_section_refused():
    with pytest.raises(InputError, match="is a section"):
        apply_override({}, "hf=3")
    assert MoireuConfig().hf.eps == 10.0


@pytest.mark.parametrize("override", ["lattice.interlayer_distance=inf", "stm.tip_height=inf",
                                      "stm.window_scale=inf", "dataset.U_values=[0,nan]", "stm.biases=[0.0, -inf]",
                                      "hf.U=nan", "train.lr=inf", "analysis.t_hopping=nan"])
def test_non_finite_numbers_refused_at_validation(override):
    key = override.split("=")[0]
    with pytest.raises(InputError, match=f"{key}.*finite number"):
        load_config("demo", overrides=[override])


def test_non_finite_in_a_config_file_refused(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text("[stm]\ntip_height = inf\n")
    with pytest.raises(InputError, match="stm.tip_height.*finite"):
        load_config("demo", config_file=f)


def test_config_directory_is_named_as_such(tmp_path):
    with pytest.raises(InputError, match="is a directory"):
        load_config("demo", config_file=tmp_path)
    with pytest.raises(InputError, match="does not exist"):
        load_config("demo", config_file=tmp_path / "nope.toml")


def test_stage_options_have_one_home():
    """The config sections take the defaults and choices of the stage options they configure: a shared field
    has the stage's default, a choice field the owner's names, and the resolved training recipe repeats none."""
    import dataclasses
    import typing

    from moireu.config import HFConfig, MeasurementConfig, STMConfig, TrainConfig
    from moireu.hf.mixing import Mixer
    from moireu.hf.scf import SCFOptions
    from moireu.hf.system import BACKENDS
    from moireu.hf.terms import INITS
    from moireu.ml.augment import PROFILES
    from moireu.ml.data import SPLIT_MODES
    from moireu.ml.models import RECIPES
    from moireu.ml.train import DEVICES, LOSSES, Recipe
    from moireu.stm.ftldos import NORMALIZE
    from moireu.stm.ldos import KINDS
    from moireu.stm.measure import MeasurementSpec

    for section, options in ((HFConfig, SCFOptions), (MeasurementConfig, MeasurementSpec)):
        shared = set(section.model_fields) & {f.name for f in dataclasses.fields(options)}
        assert len(shared) >= 8
        for name in shared:
            assert section.model_fields[name].default == getattr(options(), name), name
    spec = MeasurementSpec()
    stm = STMConfig()
    assert stm.map_pixels == spec.pixels
    lo, hi = spec.tip_height
    assert (stm.tip_height - stm.measurement.tip_height_jitter, stm.tip_height + stm.measurement.tip_height_jitter) \
        == pytest.approx((lo, hi))
    assert all(f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
               for f in dataclasses.fields(Recipe))
    choices = {(HFConfig, "init"): INITS, (HFConfig, "mixer"): Mixer.KINDS, (HFConfig, "backend"): BACKENDS,
               (STMConfig, "broadening"): KINDS, (STMConfig, "normalize"): NORMALIZE,
               (TrainConfig, "recipe"): RECIPES, (TrainConfig, "augment"): tuple(PROFILES),
               (TrainConfig, "split"): SPLIT_MODES, (TrainConfig, "loss"): LOSSES, (TrainConfig, "device"): DEVICES}
    for (section, name), owned in choices.items():
        assert set(typing.get_args(section.model_fields[name].annotation)) == set(owned), name
    # every recipe name has its builder, every split mode its function
    from moireu.analysis.run import MODES
    from moireu.config import AnalysisConfig
    from moireu.ml.data import SPLITS
    from moireu.ml.train import _RECIPE_BUILDERS

    assert tuple(_RECIPE_BUILDERS) == RECIPES and tuple(SPLITS) == SPLIT_MODES
    assert set(typing.get_args(AnalysisConfig.model_fields["mode"].annotation)) == set(MODES)
