"""A tiny Llama in Hugging Face's layout, made here because no model hub is reachable: a byte-level BPE
tokenizer trained on a few sentences and random weights (2 layers, hidden size 64), saved as
config.json, model.safetensors, tokenizer.json and tokenizer_config.json. It says nothing sensible,
but a server loads it exactly as it loads a real checkpoint: the same architecture, files and
tokenizer class. Deterministic: the same packages give the same bytes.

    python make_model.py OUT_DIR
"""
import json
import os
import sys

import numpy as np
from safetensors.numpy import save_file
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

HIDDEN, INTERMEDIATE, LAYERS, HEADS, VOCAB, CONTEXT = 64, 128, 2, 4, 512, 512
CORPUS = [
    "the quick brown fox jumps over the lazy dog",
    "a model server answers completions for its clients",
    "kubernetes runs pods on nodes and services route to them",
    "a canary takes a little traffic before it takes it all",
]


def tokenizer(out: str) -> dict:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=VOCAB, special_tokens=["<s>", "</s>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(CORPUS * 20, trainer)
    tok.save(os.path.join(out, "tokenizer.json"))
    ids = {"bos": tok.token_to_id("<s>"), "eos": tok.token_to_id("</s>"), "vocab": tok.get_vocab_size()}
    with open(os.path.join(out, "tokenizer_config.json"), "w") as f:
        json.dump({"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<s>", "eos_token": "</s>", "model_max_length": CONTEXT, "clean_up_tokenization_spaces": False}, f, indent=2)
    with open(os.path.join(out, "special_tokens_map.json"), "w") as f:
        json.dump({"bos_token": "<s>", "eos_token": "</s>"}, f, indent=2)
    return ids


def weights(vocab: int) -> dict:
    rng = np.random.default_rng(0)
    w = lambda *shape: (rng.standard_normal(shape) * 0.02).astype(np.float32)  # noqa: E731
    t = {"model.embed_tokens.weight": w(vocab, HIDDEN), "model.norm.weight": np.ones(HIDDEN, np.float32), "lm_head.weight": w(vocab, HIDDEN)}
    for i in range(LAYERS):
        p = f"model.layers.{i}."
        for name in ("q_proj", "k_proj", "v_proj", "o_proj"):
            t[f"{p}self_attn.{name}.weight"] = w(HIDDEN, HIDDEN)
        t[f"{p}mlp.gate_proj.weight"] = w(INTERMEDIATE, HIDDEN)
        t[f"{p}mlp.up_proj.weight"] = w(INTERMEDIATE, HIDDEN)
        t[f"{p}mlp.down_proj.weight"] = w(HIDDEN, INTERMEDIATE)
        t[f"{p}input_layernorm.weight"] = np.ones(HIDDEN, np.float32)
        t[f"{p}post_attention_layernorm.weight"] = np.ones(HIDDEN, np.float32)
    return t


def main(out: str) -> None:
    os.makedirs(out, exist_ok=True)
    ids = tokenizer(out)
    save_file(weights(ids["vocab"]), os.path.join(out, "model.safetensors"), metadata={"format": "pt"})
    config = {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "torch_dtype": "float32",
        "vocab_size": ids["vocab"], "hidden_size": HIDDEN, "intermediate_size": INTERMEDIATE,
        "num_hidden_layers": LAYERS, "num_attention_heads": HEADS, "num_key_value_heads": HEADS,
        "max_position_embeddings": CONTEXT, "hidden_act": "silu", "rms_norm_eps": 1e-6, "rope_theta": 10000.0,
        "tie_word_embeddings": False, "bos_token_id": ids["bos"], "eos_token_id": ids["eos"],
    }
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    with open(os.path.join(out, "generation_config.json"), "w") as f:
        json.dump({"bos_token_id": ids["bos"], "eos_token_id": ids["eos"]}, f, indent=2)


if __name__ == "__main__":
    main(sys.argv[1])
