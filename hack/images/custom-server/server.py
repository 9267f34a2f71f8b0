"""A small model server for Modelship's `custom` runtime, in Python's standard library only.

It speaks the Open Inference Protocol (V2) for a linear classifier: model.json in the model
directory holds {"coef": [[...], ...], "intercept": [...], "classes": [...]}, as scikit-learn's
LogisticRegression exposes them (coef_, intercept_, classes_). A prediction is the class with the
largest score. Environment: MODEL_NAME (default "model"), MODEL_DIR (default /mnt/models), PORT
(default 8080), and LOAD_DELAY_SECONDS to simulate a slow model load in tests. A model that cannot
be loaded ends the process with status 1.
"""
import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MODEL_NAME = os.environ.get("MODEL_NAME", "model")
MODEL_DIR = os.environ.get("MODEL_DIR", "/mnt/models")
PORT = int(os.environ.get("PORT", "8080"))
MAX_BODY = 1 << 20

state = {"model": None}
counts = {}
counts_lock = threading.Lock()


def load_model():
    time.sleep(float(os.environ.get("LOAD_DELAY_SECONDS", "0")))
    try:
        with open(os.path.join(MODEL_DIR, "model.json"), encoding="utf-8") as f:
            model = json.load(f)
        coef, intercept = model["coef"], model["intercept"]
        if len(coef) != len(intercept) or not coef:
            raise ValueError("coef and intercept differ in length")
        state["model"] = {"coef": coef, "intercept": intercept, "classes": model.get("classes", list(range(len(coef))))}
        print(json.dumps({"level": "info", "message": f"loaded {MODEL_NAME} from {MODEL_DIR}"}), flush=True)
    except Exception as err:  # a model that cannot load ends the server, as most servers do
        print(json.dumps({"level": "error", "message": f"cannot load the model: {err}"}), flush=True)
        os._exit(1)


def predict(rows):
    m = state["model"]
    out = []
    for row in rows:
        scores = [sum(w * x for w, x in zip(ws, row)) + b for ws, b in zip(m["coef"], m["intercept"])]
        out.append(m["classes"][max(range(len(scores)), key=scores.__getitem__)])
    return out


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def send_json(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        with counts_lock:
            key = (self.command, status)
            counts[key] = counts.get(key, 0) + 1

    def do_GET(self):
        if self.path == "/v2/health/live":
            return self.send_json(200, {"live": True})
        if self.path in ("/v2/health/ready", f"/v2/models/{MODEL_NAME}/ready"):
            return self.send_json(200 if state["model"] else 503, {"ready": state["model"] is not None})
        if self.path == f"/v2/models/{MODEL_NAME}":
            return self.send_json(200, {"name": MODEL_NAME, "platform": "modelship-custom", "inputs": [{"name": "input-0", "datatype": "FP64"}]})
        if self.path == "/metrics":
            with counts_lock:
                lines = [f'custom_server_requests_total{{method="{m}",code="{c}"}} {n}' for (m, c), n in sorted(counts.items())]
            data = ("# TYPE custom_server_requests_total counter\n" + "\n".join(lines) + "\n").encode()
            self.send_response(200)
            self.send_header("content-type", "text/plain; version=0.0.4")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return None
        return self.send_json(404, {"error": f"no route {self.path}"})

    def do_POST(self):
        if self.path != f"/v2/models/{MODEL_NAME}/infer":
            return self.send_json(404, {"error": f"no route {self.path}"})
        if not state["model"]:
            return self.send_json(503, {"error": "model not loaded"})
        length = int(self.headers.get("content-length", "0"))
        if length > MAX_BODY:
            return self.send_json(413, {"error": "request too large"})
        try:
            request = json.loads(self.rfile.read(length))
            tensor = request["inputs"][0]
            width = len(state["model"]["coef"][0])
            data = tensor["data"]
            flat = [x for row in data for x in row] if data and isinstance(data[0], list) else data
            rows = [flat[i:i + width] for i in range(0, len(flat), width)]
            labels = predict(rows)
        except (ValueError, KeyError, IndexError, TypeError) as err:
            return self.send_json(400, {"error": f"bad request: {err}"})
        return self.send_json(200, {
            "model_name": MODEL_NAME,
            "id": request.get("id", ""),
            "outputs": [{"name": "predict", "shape": [len(labels), 1], "datatype": "INT64", "data": labels}],
        })


if __name__ == "__main__":
    threading.Thread(target=load_model, daemon=True).start()
    server = ThreadingHTTPServer(("0.0.0.0", PORT), Handler)
    print(json.dumps({"level": "info", "message": f"listening on :{PORT}"}), flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        sys.exit(0)
