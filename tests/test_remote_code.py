"""A saved folder loads with trust_remote_code=True in a process that cannot import the package."""

import json
import textwrap

import torch
from isolated import run_without_package
from tiny_models import tiny_config, tiny_inputs

from modeling_mcg import MCGForVideoQuestionAnswering

LOADER = textwrap.dedent(
    """
    import importlib.util, json, sys
    assert importlib.util.find_spec("modeling_mcg") is None, "the package must not be importable here"
    import torch
    from transformers import AutoConfig, AutoModel, AutoModelForSeq2SeqLM
    folder, inputs_path, out_path = sys.argv[1:]
    config = AutoConfig.from_pretrained(folder, trust_remote_code=True)
    model = AutoModelForSeq2SeqLM.from_pretrained(folder, trust_remote_code=True)
    base = AutoModel.from_pretrained(folder, trust_remote_code=True)
    inputs = torch.load(inputs_path)
    with torch.no_grad():
        logits = model(**inputs).logits
        generated = model.generate(**{k: v for k, v in inputs.items() if k != "labels"}, max_new_tokens=3)
    torch.save({"logits": logits, "generated": generated}, out_path)
    print(json.dumps({"config": type(config).__name__, "model": type(model).__name__, "base": type(base).__name__}))
    """
)


def test_saved_folder_loads_without_the_package(tmp_path):
    model = MCGForVideoQuestionAnswering(tiny_config()).eval()
    inputs = tiny_inputs(model.config)
    folder = tmp_path / "model"
    model.save_pretrained(folder)
    config = json.loads((folder / "config.json").read_text())
    assert config["auto_map"]["AutoModelForSeq2SeqLM"] == "modeling_mcg.MCGForVideoQuestionAnswering"
    assert config["auto_map"]["AutoModel"] == "modeling_mcg.MCGModel"
    torch.save(inputs, tmp_path / "inputs.pt")
    result = run_without_package(LOADER, [folder, tmp_path / "inputs.pt", tmp_path / "out.pt"], tmp_path)
    names = json.loads(result.stdout.strip().splitlines()[-1])
    assert names == {"config": "MCGConfig", "model": "MCGForVideoQuestionAnswering", "base": "MCGModel"}
    out = torch.load(tmp_path / "out.pt")
    with torch.no_grad():
        torch.testing.assert_close(out["logits"], model(**inputs).logits)
        expected = model.generate(**{k: v for k, v in inputs.items() if k != "labels"}, max_new_tokens=3)
    assert torch.equal(out["generated"], expected)
