"""Trains the small real models the real-node tests serve, into OUT_DIR, and prints their digests.

    python train_models.py OUT_DIR

Every model is trained on iris, here and now, with the library versions MLServer 1.7.1 pins
(hack/images/mlserver/constraints.txt), so the server loads exactly what was saved:

    sklearn/v1/model.joblib     LogisticRegression
    sklearn/v2/model.joblib     the same, retrained with other regularisation: agrees with v1 on nearly every input
    sklearn/wrong/model.joblib  trained on shifted labels: loads and answers, but wrongly
    xgboost/model.json          XGBClassifier (save_model keeps the class labels)
    lightgbm/model.bst          LightGBM Booster (text format)
    custom/model.json           v1's coefficients for the custom server (hack/images/custom-server)
    torchserve/iris.mar         v1's coefficients in a TorchServe archive with torchserve_handler.py

The JSON printed on stdout maps each path to its sha256 digest, plus golden inputs and v1's answers.
"""
import hashlib
import json
import os
import subprocess
import sys
import tempfile

import joblib
import lightgbm
import numpy as np
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from xgboost import XGBClassifier


def digest(path):
    with open(path, "rb") as f:
        return "sha256:" + hashlib.sha256(f.read()).hexdigest()


def save(out, rel, write):
    path = os.path.join(out, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    write(path)
    return rel, digest(path)


def torchserve_archive(model, path):
    """iris.mar: the weights as the serialized file, packed by torch-model-archiver from this venv."""
    with tempfile.TemporaryDirectory() as tmp:
        weights = os.path.join(tmp, "iris.json")
        with open(weights, "w", encoding="utf-8") as f:
            json.dump({"weight": model.coef_.tolist(), "bias": model.intercept_.tolist(),
                       "classes": ["setosa", "versicolor", "virginica"]}, f)
        archiver = os.path.join(os.path.dirname(sys.executable), "torch-model-archiver")
        subprocess.run([archiver, "--model-name", "iris", "--version", "1.0", "--serialized-file", weights,
                        "--handler", os.path.join(os.path.dirname(os.path.abspath(__file__)), "torchserve_handler.py"),
                        "--export-path", os.path.dirname(path), "--force"], check=True)


def main():
    out = sys.argv[1]
    x, y = load_iris(return_X_y=True)
    v1 = LogisticRegression(max_iter=1000).fit(x, y)
    v2 = LogisticRegression(max_iter=1000, C=0.5).fit(x, y)
    wrong = LogisticRegression(max_iter=1000).fit(x, (y + 1) % 3)
    xgb = XGBClassifier(n_estimators=8, max_depth=3, learning_rate=0.5, n_jobs=1).fit(x, y)
    lgb = lightgbm.train({"objective": "multiclass", "num_class": 3, "verbose": -1, "num_threads": 1},
                         lightgbm.Dataset(x, label=y), num_boost_round=8)
    digests = dict([
        save(out, "sklearn/v1/model.joblib", lambda p: joblib.dump(v1, p)),
        save(out, "sklearn/v2/model.joblib", lambda p: joblib.dump(v2, p)),
        save(out, "sklearn/wrong/model.joblib", lambda p: joblib.dump(wrong, p)),
        save(out, "xgboost/model.json", xgb.save_model),
        save(out, "lightgbm/model.bst", lambda p: lgb.save_model(p)),
        save(out, "custom/model.json", lambda p: json.dump({
            "coef": v1.coef_.tolist(), "intercept": v1.intercept_.tolist(), "classes": v1.classes_.tolist(),
        }, open(p, "w", encoding="utf-8"))),
        save(out, "torchserve/iris.mar", lambda p: torchserve_archive(v1, p)),
    ])
    # One row of each species, and one near the versicolor/virginica border.
    golden = x[[0, 50, 100, 70]]
    json.dump({
        "digests": digests,
        "golden": golden.tolist(),
        "expected": {
            "v1": v1.predict(golden).tolist(),
            "v2": v2.predict(golden).tolist(),
            "wrong": wrong.predict(golden).tolist(),
            "xgboost": xgb.predict(golden).tolist(),
            "lightgbm": np.argmax(lgb.predict(golden), axis=1).tolist(),
        },
        "v1_v2_agreement": float(np.mean(v1.predict(x) == v2.predict(x))),
    }, sys.stdout)


if __name__ == "__main__":
    main()
