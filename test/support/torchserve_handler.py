"""A TorchServe handler for the real-node tests: a linear iris classifier whose weights are the model
archive's serialized file (JSON: weight, bias, classes), computed with torch in the server.

Request body: {"instances": [[sepal length, sepal width, petal length, petal width], ...]}
Answer: {"predictions": [class index, ...], "classes": [class name, ...]}
"""
import json
import os

import torch

_model = None


def _load(context):
    global _model
    props = context.system_properties
    path = os.path.join(props.get("model_dir"), context.manifest["model"]["serializedFile"])
    with open(path, encoding="utf-8") as f:
        m = json.load(f)
    _model = {
        "classes": m["classes"],
        "weight": torch.tensor(m["weight"], dtype=torch.float32),
        "bias": torch.tensor(m["bias"], dtype=torch.float32),
    }


def handle(data, context):
    if _model is None:
        _load(context)
    if data is None:  # TorchServe calls handle(None, context) once when it loads the model
        return None
    out = []
    for row in data:
        body = row.get("data") or row.get("body")
        if isinstance(body, (bytes, bytearray)):
            body = json.loads(body.decode("utf-8"))
        x = torch.tensor(body["instances"] if isinstance(body, dict) else body, dtype=torch.float32)
        idx = torch.argmax(x @ _model["weight"].T + _model["bias"], dim=1).tolist()
        out.append({"predictions": idx, "classes": [_model["classes"][i] for i in idx]})
    return out
