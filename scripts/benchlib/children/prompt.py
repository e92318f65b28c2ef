"""Prompts of exactly N tokens for a GGUF, one per run, each starting differently.

Tokenized the way Hearth's chat worker tokenizes a prompt (special tokens parsed, one BOS
when the model wants it), with llama.cpp's tokenizer loaded vocabulary-only.
payload: {model, tokens, runs}; result: {"prompts": [{"text", "tokens"}...]}.
"""

from __future__ import annotations

from _childio import guarded, payload

STORY = (
    "The lighthouse keeper climbed the spiral stairs every evening, counting the steps "
    "and listening to the sea against the rocks below. Ships passed in the dark, and "
    "each one carried a story he would never hear, so he invented them: a cargo of "
    "oranges bound for the north, a fisherman's daughter going home, a letter that "
    "would change a life. "
)
OPENINGS = ("Morning", "Harbour", "Winter", "Copper", "Lantern", "Island", "Compass", "Tide")


def main() -> dict[str, object]:
    import llama_cpp
    import llama_cpp.llama_cpp as lc

    args = payload()
    n, runs = int(args["tokens"]), int(args["runs"])
    llm = llama_cpp.Llama(args["model"], vocab_only=True, verbose=False)
    vocab = lc.llama_model_get_vocab(llm.model)
    add_bos = bool(lc.llama_vocab_get_add_bos(vocab))
    bos = int(llm.token_bos())

    def tokenize(text: str) -> list[int]:
        tokens = list(llm.tokenize(text.encode("utf-8"), add_bos=False, special=True))
        if add_bos and bos >= 0 and (not tokens or tokens[0] != bos):
            tokens.insert(0, bos)
        return tokens

    prompts = []
    for run in range(runs):
        # A different first word per run: no engine can answer from a cached prefix.
        opening = f"{OPENINGS[run % len(OPENINGS)]} {run + 1}. "
        text = opening + STORY * (n // 40 + 2)
        body = tokenize(text)
        start = 1 if add_bos and body and body[0] == bos else 0
        for cut in range(n, n + 8):  # detokenizing may merge pieces: find a cut that holds
            candidate = llm.detokenize(body[start:cut]).decode("utf-8", errors="ignore")
            tokens = tokenize(candidate)
            if len(tokens) == n:
                prompts.append({"text": candidate, "tokens": tokens})
                break
        else:
            raise RuntimeError(f"could not make a prompt of exactly {n} tokens")
    return {"prompts": prompts, "add_bos": add_bos}


if __name__ == "__main__":
    guarded(main)
