"""
Helpers of PretrainBench's offline lm-eval tasks (the pb_*.yaml files beside this one).

Each local task is lm-eval's built-in task with the dataset swapped for a JSONL file in the
exact schema of the Hugging Face dataset the built-in task reads (make_eval_sets.py generates
them from held-out text of the offline corpus). Document processing and
scoring are lm-eval's own functions, imported from the installed lm_eval, so a local task
computes its metric exactly as the built-in task does.

The data directory is resolved when the dataset is loaded, not written in the YAML (relative
data_files would resolve against the working directory): the evaluator passes it as task
metadata `pb_eval_data_dir`; else PB_EVAL_DATA_DIR. There is no default: the sets (the answers)
are not part of the codebase that training jobs see; `runner setup` writes them to
$PRETRAINBENCH_HOME/data/offline-eval and an evaluation job is granted them read-only.
"""

import json
import os
from pathlib import Path

import datasets
from lm_eval.tasks.hellaswag.utils import process_docs as hellaswag_process_docs  # noqa: F401
from lm_eval.tasks.wikitext.preprocess_wikitext import (  # noqa: F401
    process_results as wikitext_process_results,
    wikitext_detokenizer,
)
from lm_eval.tasks.winogrande.preprocess_winogrande import (  # noqa: F401
    doc_to_choice as winogrande_doc_to_choice,
    doc_to_target as winogrande_doc_to_target,
    doc_to_text as winogrande_doc_to_text,
)

# file, split and required fields of each offline set (the fields of the HF dataset)
DATASETS = {
    "arc_easy": ("arc_easy.jsonl", "test", ("id", "question", "choices", "answerKey")),
    "hellaswag": ("hellaswag.jsonl", "validation", ("activity_label", "ctx_a", "ctx_b", "endings", "label")),
    "piqa": ("piqa.jsonl", "validation", ("goal", "sol1", "sol2", "label")),
    "winogrande": ("winogrande.jsonl", "validation", ("sentence", "option1", "option2", "answer")),
    "wikitext": ("wikitext.jsonl", "test", ("page",)),
    "lambada_openai": ("lambada_openai.jsonl", "test", ("text",)),
}


class EvalDataError(ValueError):
    """An offline evaluation file is missing or not in its dataset's schema."""


def data_dir(metadata=None):
    """The directory of the offline evaluation sets."""
    chosen = (metadata or {}).get("pb_eval_data_dir") or os.environ.get("PB_EVAL_DATA_DIR")
    if not chosen:
        raise EvalDataError("no offline evaluation sets: pass metadata pb_eval_data_dir or set PB_EVAL_DATA_DIR")
    return Path(chosen)


def read_rows(name, directory):
    """The rows of one offline set, each checked for its schema's fields."""
    file, _, fields = DATASETS[name]
    path = Path(directory) / file
    if not path.is_file():
        raise EvalDataError(f"{path}: the offline {name} set is missing")
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise EvalDataError(f"{path}:{n}: not JSON: {e}") from e
        missing = [f for f in fields if f not in row]
        if not isinstance(row, dict) or missing:
            raise EvalDataError(f"{path}:{n}: missing field(s) {missing} of the {name} schema")
        rows.append(row)
    if not rows:
        raise EvalDataError(f"{path}: no rows")
    return rows


def _loader(name):
    def load(**kwargs):
        _, split, _ = DATASETS[name]
        rows = read_rows(name, data_dir(kwargs))
        return datasets.DatasetDict({split: datasets.Dataset.from_list(rows)})

    load.__name__ = f"load_{name}"
    load.__doc__ = f"The offline {name} set as a DatasetDict (lm-eval custom_dataset)."
    return load


load_arc_easy = _loader("arc_easy")
load_hellaswag = _loader("hellaswag")
load_piqa = _loader("piqa")
load_winogrande = _loader("winogrande")
load_wikitext = _loader("wikitext")
load_lambada_openai = _loader("lambada_openai")
