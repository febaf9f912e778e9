"""Loading user estimators: a valid plugin loads three ways; each invalid one gets its own error."""

from __future__ import annotations

import textwrap

import pytest

from dgbench.estimators.plugin import PluginError, load_estimator, resolve_estimator

HEADER = """
import torch
from dgbench.estimators import Estimator, score_function
"""

VALID = HEADER + '''
class HalfReinforce(Estimator):
    """REINFORCE with a constant baseline of 1/2 (a user's toy estimator)."""
    id = "half-reinforce"
    family = "both"
    unbiased = True
    relaxed = False
    evals_per_sample = 1
    paper = "test plugin"

    def __init__(self, node="bernoulli", *, samples=1):
        super().__init__(node, samples)

    def forward(self, logits, f, *, generator):
        z = self.node.sample(logits.detach(), self.samples, generator)
        fz = self.evaluate(f, z, logits)
        return self.attach(fz.mean(0), logits, score_function(self.node, logits, z, fz - 0.5))
'''


def plugin(tmp_path, body, name="my_estimator.py"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(body))
    return str(path)


def test_valid_plugin_loads_from_file(tmp_path):
    cls = load_estimator(plugin(tmp_path, VALID))
    assert cls.id == "half-reinforce"


def test_valid_plugin_loads_from_file_and_class_name(tmp_path):
    assert load_estimator(plugin(tmp_path, VALID) + ":HalfReinforce").__name__ == "HalfReinforce"


def test_valid_plugin_loads_as_module_attr(tmp_path, monkeypatch):
    plugin(tmp_path, VALID, name="user_plugin_module.py")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert resolve_estimator("user_plugin_module:HalfReinforce").id == "half-reinforce"


def test_registered_id_resolves_without_loading():
    assert resolve_estimator("disarm").id == "disarm"


FORWARD = """        z = self.node.sample(logits.detach(), self.samples, generator)
        fz = self.evaluate(f, z, logits)
        return self.attach(fz.mean(0), logits, score_function(self.node, logits, z, fz - 0.5))
"""

CASES = {
    "missing file": (None, "no such file"),
    "syntax error": (HEADER + "def broken(:\n", "importing it failed: SyntaxError"),
    "import raises": (HEADER + "raise RuntimeError('boom')\n", "importing it failed: RuntimeError: boom"),
    "no estimator": (HEADER + "x = 1\n", "defines no subclass of estimators.Estimator"),
    "two estimators": (VALID + "\nclass Other(HalfReinforce):\n    id = 'other'\n", "defines several estimators (HalfReinforce, Other)"),
    "bad id": (VALID.replace('id = "half-reinforce"', 'id = "Half Reinforce"'), "id must be a lower-case string"),
    "taken id": (VALID.replace('id = "half-reinforce"', 'id = "disarm"'), "id 'disarm' is already taken"),
    "wrong family": (VALID.replace('family = "both"', 'family = "binary"'), "family must be one of 'bernoulli', 'categorical', 'both', 'gaussian', 'any', got 'binary'"),
    "unknown group": (VALID.replace('family = "both"', 'family = "both"\n    group = "baselines"'), "group must be one of 'score function'"),
    "unbiased not bool": (VALID.replace("unbiased = True", "unbiased = 'yes'"), "unbiased must be True or False"),
    "bad evals": (VALID.replace("evals_per_sample = 1", "evals_per_sample = 0"), "evals_per_sample must be a positive int"),
    "no forward": (VALID.split("    def forward")[0], "does not implement forward"),
    "constructor fails": (VALID.replace("super().__init__(node, samples)", "raise ValueError('needs a config')"), "constructing HalfReinforce(node='bernoulli') failed: ValueError: needs a config"),
    "forward raises": (VALID.replace(FORWARD, "        raise KeyError('oops')\n"), "forward on bernoulli logits raised KeyError"),
    "returns float": (VALID.replace(FORWARD, "        return 1.0\n"), "forward returned float, expected a tensor"),
    "wrong shape": (VALID.replace(FORWARD, FORWARD.replace("fz.mean(0), logits", "fz, logits").replace("return self.attach(", "return self.attach(")), "returned shape (1, 2)"),
    "returns nan": (VALID.replace(FORWARD, FORWARD.replace("fz.mean(0)", "fz.mean(0) * float('nan')")), "returned NaN or Inf"),
    "no gradient": (VALID.replace(FORWARD, FORWARD.replace("return self.attach(fz.mean(0), logits, score_function(self.node, logits, z, fz - 0.5))", "return fz.mean(0).detach()")), "no gradient with respect to the logits"),
    "global rng": (VALID.replace(FORWARD, "        z = (torch.rand(logits.shape) < torch.sigmoid(logits.detach())).to(logits.dtype) if logits.dim() == 2 else self.node.sample(logits.detach(), 1, generator)[0]\n        return self.attach(f(z), logits, score_function(self.node, logits, z[None], f(z)[None]))\n"), "draws from the global RNG"),
    "not deterministic": (VALID.replace(FORWARD, "        self.calls = getattr(self, 'calls', 0) + 1\n" + FORWARD.replace("fz.mean(0), logits", "fz.mean(0) + self.calls, logits")), "not deterministic under the same generator"),
    "differentiates f": (VALID.replace(FORWARD, "        mu = self.node.probs(logits)\n        return self.evaluate(f, mu[None], logits).mean(0)\n"), "declares relaxed=False but evaluated f at non-discrete points"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_invalid_plugin_gets_its_specific_one_line_error(tmp_path, case):
    body, message = CASES[case]
    spec = str(tmp_path / "absent.py") if body is None else plugin(tmp_path, body)
    with pytest.raises(PluginError) as info:
        load_estimator(spec)
    text = str(info.value)
    assert message in text, text
    assert "\n" not in text and text.startswith(spec)


def test_not_a_class(tmp_path):
    spec = plugin(tmp_path, VALID + "\ndef helper():\n    pass\n") + ":helper"
    with pytest.raises(PluginError, match="is a function, not a subclass of estimators.Estimator"):
        load_estimator(spec)


def test_not_a_subclass(tmp_path):
    spec = plugin(tmp_path, VALID + "\nclass Plain:\n    pass\n") + ":Plain"
    with pytest.raises(PluginError, match="class Plain does not subclass estimators.Estimator"):
        load_estimator(spec)


def test_missing_attribute(tmp_path):
    with pytest.raises(PluginError, match="has no attribute 'Nope'"):
        load_estimator(plugin(tmp_path, VALID) + ":Nope")


def test_unimportable_module():
    with pytest.raises(PluginError, match="cannot import module 'no_such_module_xyz'"):
        load_estimator("no_such_module_xyz:Thing")


def test_unknown_plain_name():
    with pytest.raises(PluginError, match="unknown estimator 'nonsense'"):
        resolve_estimator("nonsense")
