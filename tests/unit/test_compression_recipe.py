"""Compression recipes: every example validates; bad recipes name the file, the line, the field and a hint."""

from __future__ import annotations

from pathlib import Path

import pytest

from tuneforge.compression.recipe import CompressionRecipe, load_recipe
from tuneforge.compression.report import summarize
from tuneforge.errors import ConfigError

EXAMPLES = sorted((Path(__file__).parents[2] / "configs" / "compress").glob("*.yaml"))


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "recipe.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_example_recipe_validates(path):
    recipe = load_recipe(path)
    assert recipe.steps
    assert all(Path(t.data).is_absolute() for t in recipe.eval.tasks)  # relative to the recipe file


def test_unknown_step_name_names_line_field_and_close_name(tmp_path):
    path = write(tmp_path, "steps:\n  - name: quantise\n    method: int8_dynamic\n")
    with pytest.raises(ConfigError) as caught:
        load_recipe(path)
    error = caught.value
    assert error.line == 2 and error.field == "steps.0" and "unknown name 'quantise'" in error.message
    assert error.hint == "did you mean 'quantize'?"


def test_unknown_option_of_a_step_is_refused_with_the_close_key(tmp_path):
    path = write(tmp_path, "steps:\n  - name: prune\n    method: magnitude\n    sparsty: 0.5\n")
    with pytest.raises(ConfigError) as caught:
        load_recipe(path)
    assert caught.value.line == 4 and caught.value.field == "steps.0.sparsty"
    assert caught.value.hint == "did you mean 'sparsity'?"


def test_steps_that_need_calibration_data_say_so():
    with pytest.raises(Exception, match="needs calibration data"):
        CompressionRecipe.model_validate({"steps": [{"name": "prune", "method": "wanda"}]})
    with pytest.raises(Exception, match="needs calibration data"):
        CompressionRecipe.model_validate({"steps": [{"name": "export", "format": "onnx",
                                                     "quantization": "int8_static"}]})


def test_export_quantization_must_fit_the_format():
    with pytest.raises(Exception, match="does not apply to onnx"):
        CompressionRecipe.model_validate({"steps": [{"name": "export", "format": "onnx", "quantization": "q4_0"}]})
    recipe = CompressionRecipe.model_validate({"steps": [{"name": "export"}]})
    assert recipe.steps[0].format == "gguf" and recipe.steps[0].quantization == "q8_0"


def test_summary_compares_the_result_with_the_source():
    from tuneforge.compression.measure import LatencyFigures, StageFigures

    def stage(mb: float, em: float, ms: float) -> StageFigures:
        latency = LatencyFigures(requests=1, tokens=8, ttft_p50_ms=10, per_token_p50_ms=ms, device="cpu")
        return StageFigures(label="x", format="f", disk_mb=mb, parameters=10, nonzero_parameters=10, runs_on=["cpu"],
                            latency=latency, quality={"t": {"exact_match": em}}, tasks=[], details={}, seconds=0)

    summary = summarize(stage(100, 0.8, 20), stage(25, 0.78, 10))
    assert summary["size_reduction"] == 0.75 and summary["per_token_speedup"] == 2.0
    assert summary["relative_quality_change"]["t/exact_match"] == pytest.approx(-0.025)


def test_int8_dynamic_keeps_down_proj_in_fp32_by_default():
    from tuneforge.compression.recipe import QuantizeStep

    assert QuantizeStep(method="int8_dynamic").skip_modules == ["down_proj"]
    assert QuantizeStep(method="int8_weight_only").skip_modules == []
    assert QuantizeStep(method="int8_dynamic", skip_modules=[]).skip_modules == []
