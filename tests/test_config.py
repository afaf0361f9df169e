"""Config validation: defaults are the paper's, typed sections, every bad key named."""

from __future__ import annotations

import pytest
import yaml

from rhcloud.config import (
    PAPER_MODELS,
    ClusterOptions,
    Config,
    ConfigError,
    DriversOptions,
    EvaluationOptions,
    config_from_dict,
    load_config,
)


def test_defaults_are_the_papers():
    c = Config()
    assert tuple(c.models) == PAPER_MODELS and len(PAPER_MODELS) == 13
    assert c.period == (1990, 2010) and c.members == "first"
    assert c.reference_grid == "CNRM-ESM2-1"
    assert c.drivers == DriversOptions()
    assert c.drivers.structures == ["exponential", "gaussian", "spherical", "linear",
                                    "rational"]
    assert c.drivers.nuggets == (False, True) and c.drivers.residuals == ["median", "mean"]
    assert c.cluster == ClusterOptions() and c.cluster.kind == "local"
    assert c.evaluation == EvaluationOptions(min_landfrac=0.5, weights="cell")


def test_evaluation_section_typed():
    c = config_from_dict({"evaluation": {"min_landfrac": 0, "weights": "area"}})
    assert isinstance(c.evaluation, EvaluationOptions)
    assert c.evaluation.min_landfrac == 0.0 and c.evaluation.weights == "area"


def test_design_keys_accepted_and_typed():
    c = config_from_dict({"drivers": {"nugget": False, "structures": ["gaussian"],
                                      "grid": "regular:4"},
                          "cluster": {"kind": "gateway", "adapt": {"minimum": 2,
                                                                   "maximum": 20}}})
    assert isinstance(c.drivers, DriversOptions) and c.drivers.nuggets == (False,)
    assert c.drivers.structures == ["gaussian"] and c.drivers.grid == "regular:4"
    assert isinstance(c.cluster, ClusterOptions) and c.cluster.adapt == {"minimum": 2,
                                                                         "maximum": 20}


@pytest.mark.parametrize(("data", "message"), [
    ({"modles": "all"}, "'modles' (did you mean 'models'?)"),
    ({"drivers": {"nuget": True}}, "drivers: unknown keys 'nuget' (did you mean 'nugget'?)"),
    ({"cluster": {"n_wrokers": 2}}, "cluster: unknown keys 'n_wrokers' (did you mean "
                                    "'n_workers'?)"),
    ({"cluster": {"kind": "slurm"}}, "cluster.kind: expected one of"),
    ({"cluster": {"kind": "address"}}, "needs an 'address'"),
    ({"cluster": {"adapt": {"minimun": 1}}}, "cluster.adapt: unknown keys 'minimun'"),
    ({"cluster": {"n_workers": 0}}, "cluster.n_workers: must be at least 1"),
    ({"drivers": {"residuals": ["median", "max"]}}, "drivers.residuals"),
    ({"drivers": {"structures": ["matern"]}}, "drivers.structures"),
    ({"drivers": {"distance": "manhattan"}}, "drivers.distance"),
    ({"drivers": {"likelihood": "reml"}}, "drivers.likelihood"),
    ({"drivers": {"nugget": "yes"}}, "drivers.nugget: expected true or false"),
    ({"drivers": ["gaussian"]}, "drivers: expected a mapping"),
    ({"products": [{"name": "p", "reader": "netcdf"}]}, "products[0] (p): missing 'path'"),
    ({"products": [{"reader": "netcdf", "path": "x.nc", "unit": "g"}]},
     "'unit' (did you mean 'units'?)"),
    ({"npp_reference": {"path": "x.nc"}}, "npp_reference: missing 'reader'"),
    ({"covariates": {"MAT": {"reader": "gswp3", "path": "t.nc", "varaible": "tas"}}},
     "covariates.MAT: unknown keys 'varaible' (did you mean 'variable'?)"),
    ({"period": [2010, 1990]}, "last year 1990 is before first year 2010"),
    ({"members": "some"}, "members:"),
    ({"variables": ["gpp"]}, "variables:"),
    ({"evaluation": {"min_landfrac": 1.0}}, "evaluation.min_landfrac: expected a number in "
                                            "[0, 1), got 1.0"),
    ({"evaluation": {"min_landfrac": -0.1}}, "evaluation.min_landfrac"),
    ({"evaluation": {"min_landfrac": "half"}}, "evaluation.min_landfrac"),
    ({"evaluation": {"weights": "pixel"}}, "evaluation.weights: expected one of ['cell', "
                                           "'area'], got 'pixel'"),
    ({"evaluation": {"min_land_frac": 0.3}}, "evaluation: unknown keys 'min_land_frac' (did "
                                             "you mean 'min_landfrac'?)"),
])
def test_bad_keys_and_values_are_named(data, message):
    with pytest.raises(ConfigError) as err:
        config_from_dict(data)
    assert message in str(err.value)


def test_round_trip_through_yaml(tmp_path):
    c = config_from_dict({"models": ["CanESM5"], "members": "all",
                          "drivers": {"nugget": False}, "cluster": {"n_workers": 2}})
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(c.to_dict()))
    again = load_config(path)
    assert again == c


def test_relative_entry_paths_resolve_against_the_file(tmp_path):
    (tmp_path / "sub").mkdir()
    path = tmp_path / "sub" / "run.yaml"
    path.write_text(yaml.safe_dump({
        "catalog": "cat.json", "products": [{"name": "p", "reader": "netcdf", "path": "p.nc"}],
        "covariates": {"MAT": {"reader": "gswp3", "path": "gs://b/t.nc"}}}))
    c = load_config(path)
    assert c.catalog == str(tmp_path / "sub" / "cat.json")
    assert c.products[0]["path"] == str(tmp_path / "sub" / "p.nc")
    assert c.covariates["MAT"]["path"] == "gs://b/t.nc"


def test_evaluation_section_defaults_and_validation():
    from rhcloud.config import DEFAULT_SCORE_WEIGHTS, EvaluationOptions

    c = config_from_dict({"evaluation": {"score_weights": {"response": 3}}})
    assert isinstance(c.evaluation, EvaluationOptions)
    assert c.evaluation.score_weights == {**DEFAULT_SCORE_WEIGHTS, "response": 3.0}
    assert c.evaluation.regions == ["ar6", "band"] and c.evaluation.response_bins == 10
    assert Config().evaluation.score_weights == DEFAULT_SCORE_WEIGHTS
    bad = [({"score_weight": {}}, "did you mean 'score_weights'"),
           ({"score_weights": {"bias": -1}}, "numbers >= 0"),
           ({"score_weights": {"rmse2": 1}}, "unknown keys 'rmse2'"),
           ({"score_weights": {k: 0 for k in DEFAULT_SCORE_WEIGHTS}}, "at least one"),
           ({"regions": ["srex"]}, "evaluation.regions"),
           ({"response_bins": 1}, "integer >= 2"),
           ({"response_edges": {"MAP": [0, 500, 400]}}, "increasing"),
           ({"portrait_members": "yes"}, "true or false")]
    for section, message in bad:
        with pytest.raises(ConfigError, match=message):
            config_from_dict({"evaluation": section})
