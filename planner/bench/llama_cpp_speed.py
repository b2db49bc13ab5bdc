"""The same speed probe as `LlmPlanner::speed_probe`, run by llama.cpp
(llama-cpp-python) on the same GGUF file, for plan-bench's side-by-side figure.

  llama_cpp_speed.py MODEL.gguf PREFIX_FILE PROMPT_FILE N_TOKENS THREADS

Evaluates the fixed prefix, then times the prefill of the prompt after it and
N greedy decode steps. Prints one JSON object: load_s, prefill_tok_s,
decode_tok_s (or error, when llama_cpp is not installed)."""
import json
import sys
import time


def main() -> int:
    model, prefix_file, prompt_file, n, threads = sys.argv[1:6]
    try:
        import llama_cpp
        import numpy as np
    except ImportError as e:
        print(json.dumps({"error": f"llama-cpp-python is not installed ({e})"}))
        return 0
    t0 = time.monotonic()
    llm = llama_cpp.Llama(model_path=model, n_ctx=2048, n_threads=int(threads),
                          n_batch=512, verbose=False)
    load_s = time.monotonic() - t0
    tok = lambda path: llm.tokenize(open(path, encoding="utf-8").read().encode(),
                                    add_bos=False, special=True)
    prefix, prompt = tok(prefix_file), tok(prompt_file)
    llm.eval(prefix)
    t1 = time.monotonic()
    llm.eval(prompt)
    prefill_s = time.monotonic() - t1
    t2 = time.monotonic()
    for _ in range(int(n)):
        nxt = int(np.argmax(llm.scores[llm.n_tokens - 1]))
        llm.eval([nxt])
    decode_s = time.monotonic() - t2
    print(json.dumps({
        "version": llama_cpp.__version__,
        "load_s": load_s,
        "prompt_tokens": len(prompt),
        "prefill_tok_s": len(prompt) / prefill_s,
        "decode_tok_s": int(n) / decode_s,
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
