"""
A logits worker: the trained model of one checkpoint behind a Unix socket, in a sandbox of its own.

    PB_WORKER_DIR=w PB_CKPT_DIR=train_out python logits_worker.py    # see scripts/logits_worker.sh

When the architecture is agent code (the normalisation task), the trusted evaluator never imports
it: it sends batches of tokens here and gets back, for the positions it names, the hidden states
that enter lm_head (wire format: pb_logits.py). It applies the head itself, with the weights it
loaded from ckpt.pt (GPT.forward and the tied lm_head are frozen code), and computes every metric.
This program is ours, but it shares its process with the agent's model source, so nothing it
returns is trusted: the evaluator checks shapes, finiteness and causality (evaluate.py).

Steps: bind $PB_WORKER_DIR/logits.sock (the evaluator's connection waits in the backlog); load
ckpt.pt with weights_only from $PB_NEEDS_DIR/$PB_CKPT_JOB (or PB_CKPT_DIR), import its
model_source.py, rebuild GPT; accept one connection; send HELLO (or ERROR with the reason and exit
1); answer every REQUEST with a RESPONSE until the evaluator closes the connection (exit 0). No
data, no labels, no network: it sees token ids and positions only.
"""

import os
import sys

import torch
import torch.nn as nn

import pb_checkpoint
import pb_config
import pb_logits

# -----------------------------------------------------------------------------
# the model, with its head's input captured (pb_checkpoint.CaptureHead)


def load(environ):
    """(model, capture, device, model_config) for the checkpoint this worker serves."""
    device = environ.get("PB_DEVICE", "") or ("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True  # as the evaluator's own forward passes
        torch.backends.cudnn.allow_tf32 = True
    ckpt_dir = pb_config.checkpoint_dir(environ)
    ckpt = pb_checkpoint.load_checkpoint(ckpt_dir)
    module = pb_checkpoint.import_model_source(ckpt_dir)  # agent code from here on
    model = pb_checkpoint.build_model(module, ckpt, device)
    capture = pb_checkpoint.CaptureHead(model.lm_head)
    model.lm_head = capture
    return model, capture, device, ckpt["model_config"]


@torch.inference_mode()
def hidden_states(model, capture, device, tokens, positions):
    """The inputs of lm_head at flat positions of the batch tokens (B, T): (K, C) float32, numpy."""
    idx = torch.from_numpy(tokens).to(device)
    capture.captured = None
    model(idx)
    h = capture.captured
    if not torch.is_tensor(h) or h.dim() != 3 or tuple(h.shape[:2]) != tuple(idx.shape):
        shape = tuple(h.shape) if torch.is_tensor(h) else type(h).__name__
        raise RuntimeError(f"the model's forward gave lm_head an input of shape {shape} for tokens of "
                           f"shape {tuple(idx.shape)}; GPT.forward applies it to (B, T, n_embd)")
    return h.reshape(-1, h.size(-1))[torch.from_numpy(positions).to(device)].float().cpu().numpy()


# -----------------------------------------------------------------------------
# serving


def main():
    environ = dict(os.environ)
    directory = environ.get("PB_WORKER_DIR", "")
    if not directory:
        sys.exit("error: PB_WORKER_DIR must name the worker's socket directory")
    listener = pb_logits.listen(directory)
    error = None
    try:
        model, capture, device, model_config = load(environ)
        block_size, vocab_size = int(model_config["block_size"]), int(model_config["vocab_size"])
        shape = (int(model_config["n_embd"]), block_size, vocab_size)
    except Exception as e:  # a broken checkpoint or model source: the evaluator reports it
        error = f"{type(e).__name__}: {e}"
    conn, _ = listener.accept()
    listener.close()
    if error is not None:
        pb_logits.send_error(conn, error)
        print(f"logits worker: cannot serve: {error}", file=sys.stderr, flush=True)
        return 1
    pb_logits.send_hello(conn, *shape)
    served = 0
    while True:
        try:
            request = pb_logits.read_request(conn, block_size, vocab_size)
        except (ValueError, ConnectionError, OSError) as e:
            print(f"logits worker: bad request: {e}", file=sys.stderr, flush=True)
            return 1
        if request is None:  # the evaluator is done
            print(f"logits worker: served {served} request(s)", flush=True)
            return 0
        try:
            hidden = hidden_states(model, capture, device, *request)
        except Exception as e:
            pb_logits.send_error(conn, f"{type(e).__name__}: {e}")
            print(f"logits worker: the model failed: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
            return 1
        pb_logits.send_response(conn, hidden)
        served += 1


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # agent code ran here: no interpreter shutdown hooks of it
