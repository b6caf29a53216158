"""`pgolf data build` and `pgolf data inspect`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pgolf.cli.app import app, emit, load_config, next_step, user_errors

data_app = typer.Typer(no_args_is_help=True, rich_markup_mode="rich",
                       context_settings={"help_option_names": ["-h", "--help"]},
                       help="Build and inspect challenge-format data directories.")
app.add_typer(data_app, name="data")


@data_app.command(
    "build",
    epilog="Examples:\n\n"
           "  pgolf data build --out runs/demo/data                      # the embedded corpus, its own tokenizer\n\n"
           "  pgolf data build --corpus web.jsonl.zst --tokenizer fineweb_1024_bpe.model --val-docs 300 --out data/web\n\n"
           "  pgolf data build --corpus a.jsonl --corpus b.txt --train-tokenizer --vocab-size 1024 --val-docs 100 --out data/ab\n\n"
           "  pgolf data build --corpus docs.jsonl --transform caseops "
           "--tokenizer fineweb_8192_bpe_lossless_caps_caseops_v1_reserved.model --val-docs 50000 --out data/caseops",
)
def build(
    out: Annotated[Path, typer.Option(help="Output data directory.")],
    corpus: Annotated[list[Path] | None, typer.Option(
        help="Corpus file (.jsonl, .jsonl.zst, .jsonl.gz: one {\"text\": ...} per line; .txt: one document), "
             "repeatable, read in order. Default: the embedded corpus (Python's own docs).")] = None,
    tokenizer: Annotated[Path | None, typer.Option(help="SentencePiece .model to encode with.")] = None,
    train_tokenizer: Annotated[bool, typer.Option("--train-tokenizer", help=(
        "Train a SentencePiece BPE (official sp1024 settings) on the training documents."))] = False,
    vocab_size: Annotated[int, typer.Option(help="Vocabulary size of a trained tokenizer.")] = 1024,
    val_docs: Annotated[int | None, typer.Option(
        help="The first N documents form the validation split (default 50).")] = None,
    heldout_docs: Annotated[int | None, typer.Option(
        help="Documents after val set aside as the held-out split for `pgolf verify --probe` (read by no stage; "
             "default: as many as val, at most 1,000; 0: none).")] = None,
    shard_tokens: Annotated[int, typer.Option(help="Tokens per shard file.")] = 100_000_000,
    transform: Annotated[str, typer.Option(help=(
        "Text transform before tokenizing: none, or caseops (the lossless CaseOps case transform of PR #2135; needs "
        "a CaseOps --tokenizer; the byte sidecar charges the original text's bytes)."))] = "none",
    force: Annotated[bool, typer.Option("--force", help="Replace an existing --out directory.")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print the summary as JSON on stdout.")] = False,
) -> None:
    """Tokenize a corpus into challenge shards, a per-token byte sidecar and a manifest."""
    with user_errors():
        from pgolf.data.config import DataConfig
        from pgolf.stages import data as stage

        table = {"corpus": [str(c) for c in corpus or []], "tokenizer": str(tokenizer or ""),
                 "train_tokenizer": train_tokenizer, "vocab_size": vocab_size, "shard_tokens": shard_tokens,
                 "transform": transform}
        if val_docs is not None:
            table["val_docs"] = val_docs
        if heldout_docs is not None:
            table["heldout_docs"] = heldout_docs
        cfg = load_config(DataConfig, None, None, base=table)
        manifest = stage.build(cfg, out, force=force)
        emit(stage.summary(manifest, out), json_out, title=f"data -> {out}")
    if not json_out:
        next_step(f"pgolf train --preset tiny --data {out} --out {out.parent / 'train'}")


@data_app.command(
    "inspect",
    epilog="Examples:\n\n  pgolf data inspect runs/demo/data\n\n"
           "  pgolf data inspect data/datasets/fineweb10B_sp1024 --tokenizer data/tokenizers/fineweb_1024_bpe.model --json",
)
def inspect(
    directory: Annotated[Path, typer.Argument(help="A pgolf data directory or a directory of challenge shards.")],
    tokenizer: Annotated[Path | None, typer.Option(help="SentencePiece .model (default: the directory's own).")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the report as JSON on stdout.")] = False,
) -> None:
    """Counts, byte totals, bytes per token, and a hash check of every file against the manifest."""
    with user_errors():
        from pgolf.stages import data as stage

        report = stage.inspect(directory, tokenizer)
        emit(report, json_out, title=f"data {directory}")
