"""The chat worker process: llama-cpp-python behind a pipe, one model at a time.

`worker_main(conn)` is what the chat worker process runs (the client names this module;
`app.engines.worker.process` starts it in a fresh "spawn" process). It is the only place
in Hearth that imports `llama_cpp`, and it does so inside the worker, so importing this
module (as tests do) loads nothing heavy.

The worker is single-threaded. It runs the serve loop of every engine worker
(`app.engines.worker.serve`: requests in order, cancel and unload rules, errors as
`ErrorEvent`s) with the handlers of `app.engines.chat_llama.protocol`'s requests, and
looks at the pipe without blocking while it works, so that a cancel lands quickly:

- during a load, from llama.cpp's own progress callback (returning False aborts the load);
- during prompt evaluation, from llama.cpp's abort callback (checked between graph nodes);
- during decoding, between tokens;
- while embedding, between batches of inputs.

A token count asked mid-generation is answered at once. A model loaded for embeddings
(`LoadRequest.embedding_pooling`) answers `EmbedRequest`s and refuses to generate.
"""

from __future__ import annotations

import codecs
import ctypes
import gc
import os
import random
import struct
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from app.engines.chat_llama.cpu_share import CpuReading, ThreadGovernor, read_cpu
from app.engines.chat_llama.protocol import (
    LOAD_REQUEST_ID,
    DoneReason,
    EmbeddingsEvent,
    EmbedRequest,
    ErrorEvent,
    GenerateRequest,
    Loaded,
    LoadProgress,
    LoadRequest,
    Metrics,
    TokenEvent,
    TokenizeRequest,
    TokensEvent,
)
from app.engines.worker.serve import LoadAborted, ParentGone, WorkerServer, run_worker
from app.hardware.llama_modules import load_backend_modules

#: Send a LoadProgress when the fraction grew this much, or this long after the last one.
PROGRESS_STEP = 0.01
PROGRESS_INTERVAL_S = 0.25
#: How often the abort callback reads the pipe while a prompt is being evaluated.
ABORT_POLL_INTERVAL_S = 0.02
#: Set to "1" to copy llama.cpp's log to the worker's stderr (debugging).
LOG_ENV = "HEARTH_LLAMA_LOG"
#: Set to "1" (tests only) to make every load with GPU layers fail as if the GPU had,
#: exercising the retry on CPU on machines without a GPU.
FAKE_GPU_FAILURE_ENV = "HEARTH_FAKE_GPU_LOAD_FAILURE"

# ggml's log levels and device types (ggml.h, ggml-backend.h).
_GGML_LOG_LEVEL_ERROR = 4
_GGML_LOG_LEVEL_CONT = 5
_GGML_DEV_TYPE_GPU = 1
_GGML_DEV_TYPE_IGPU = 2

_KV_GGML_TYPES = {
    "f32": 0,
    "f16": 1,
    "q4_0": 2,
    "q4_1": 3,
    "q5_0": 6,
    "q5_1": 7,
    "q8_0": 8,
    "iq4_nl": 20,
    "bf16": 30,
}
# llama.h's enum llama_pooling_type.
_POOLING_TYPES = {"mean": 1, "cls": 2, "last": 3}


def without_chat_templates(metadata: dict[str, str]) -> dict[str, str]:
    """GGUF metadata minus `tokenizer.chat_template` and its named variants."""
    return {k: v for k, v in metadata.items() if not k.startswith("tokenizer.chat_template")}


def worker_main(conn: Connection) -> None:
    """Serve chat requests on `conn` until an UnloadRequest or until the parent goes away."""
    run_worker(conn, _ChatWorker)


def describe_model_file_problem(path: str) -> str | None:
    """Why `path` cannot be a GGUF model (one sentence), or None if it looks like one."""
    p = Path(path)
    try:
        if not p.exists():
            return f"There is no model file at {path}."
        if p.is_dir():
            return f"{path} is a folder, not a GGUF model file."
        with p.open("rb") as f:
            magic = f.read(4)
    except PermissionError:
        return f"Hearth is not allowed to read {path} (permission denied)."
    except OSError as exc:
        return f"{path} could not be read: {exc.strerror or exc}."
    if magic != b"GGUF":
        return f"{p.name} is not a GGUF model file (it does not start with the GGUF signature)."
    return None


class StopMatcher:
    """Finds stop strings in streamed text, holding back text that may begin one."""

    def __init__(self, stops: Sequence[str]) -> None:
        self.stops = tuple(s for s in stops if s)
        self.pending = ""

    def feed(self, text: str) -> tuple[str, bool]:
        """(text safe to show now, whether a stop string was reached)."""
        if not self.stops:
            return text, False
        self.pending += text
        hits = [i for i in (self.pending.find(s) for s in self.stops) if i >= 0]
        if hits:
            out, self.pending = self.pending[: min(hits)], ""
            return out, True
        hold = 0
        for k in range(min(len(self.pending), max(map(len, self.stops)) - 1), 0, -1):
            tail = self.pending[-k:]
            if any(s.startswith(tail) for s in self.stops):
                hold = k
                break
        cut = len(self.pending) - hold
        out, self.pending = self.pending[:cut], self.pending[cut:]
        return out, False

    def flush(self) -> str:
        out, self.pending = self.pending, ""
        return out


class _ChatWorker(WorkerServer):
    name = "chat worker"

    def __init__(self, conn: Connection) -> None:
        super().__init__(conn)
        self.handlers = {
            LoadRequest: self._load,
            GenerateRequest: self._generate,
            TokenizeRequest: self._tokenize_request,
            EmbedRequest: self._embed,
        }
        import llama_cpp  # the only import of llama_cpp in Hearth (see module docstring)
        import llama_cpp._internals as internals
        import llama_cpp.llama_cpp as lc

        self.llama_cpp: Any = llama_cpp
        self.internals: Any = internals
        self.lc: Any = lc
        self.llm: Any = None
        self.vocab: Any = None
        self.loaded: Loaded | None = None
        self.pooling: str | None = None  # set while a model is loaded for embeddings
        self.governor: ThreadGovernor | None = None
        self.n_gpu_layers_used = 0
        self.backend_used = "cpu"
        self._gpu_backend: str | None = None
        self._gpu_backend_checked = False
        self._piece_buf = ctypes.create_string_buffer(64)
        self._errors: deque[str] = deque(maxlen=20)
        self._forward_logs = os.environ.get(LOG_ENV) == "1"
        # Our own log callback: llama.cpp's error lines are the best explanation of a
        # failed load, and the default one prints to a stderr that Llama() silences.
        self._log_callback = lc.llama_log_callback(self._on_log)
        lc.llama_log_set(self._log_callback, ctypes.c_void_p(0))
        # A portable build (the installers') keeps its CPU code in per-x86-level modules
        # (loaded after the log callback is set: ggml reports the load there, not on stderr).
        self._module_problem: str | None = None
        try:
            self.cpu_variant = load_backend_modules(str(Path(llama_cpp.__file__).parent), lc._lib)
        except (RuntimeError, OSError) as exc:
            self.cpu_variant = ()
            self._module_problem = str(exc)

    # --- plumbing -----------------------------------------------------------------------

    def _on_log(self, level: int, text: bytes, _user_data: object) -> None:
        try:
            line = text.decode("utf-8", errors="replace")
            if level == _GGML_LOG_LEVEL_ERROR:
                self._errors.append(line.strip())
            elif level == _GGML_LOG_LEVEL_CONT and self._errors and not line.endswith("\n"):
                self._errors[-1] += line.strip()
            if self._forward_logs and sys.__stderr__ is not None:
                sys.__stderr__.write(line)
        except Exception:  # a log line must never break inference
            pass

    def answer_at_once(self, msg: object) -> bool:
        if isinstance(msg, TokenizeRequest) and self.llm is not None:
            self._tokenize_request(msg)
            return True
        return False

    def shutdown(self) -> None:
        self.unload_model()

    # --- loading ------------------------------------------------------------------------

    def unload_model(self) -> None:
        if self.governor is not None:
            self.governor.stop()
            self.governor = None
        if self.llm is not None:
            self.llm.close()
            self.llm = None
            gc.collect()
        self.vocab = None
        self.loaded = None
        self.pooling = None

    def _load(self, req: LoadRequest) -> None:
        self.unload_model()
        t0 = time.perf_counter()
        cpu_at_start = _cpu_reading()
        problem = self._module_problem or describe_model_file_problem(req.model_path)
        if problem is not None:
            self.send(ErrorEvent(None, "load_failed", problem))
            return
        self._progress_sent = -1.0
        self._progress_sent_at = 0.0
        note = None
        try:
            try:
                llm = self._build(req, req.n_gpu_layers, t0)
            except LoadAborted:
                raise
            except Exception as exc:
                if req.n_gpu_layers == 0 or not (self._gpu_backend_name() or _fake_gpu()):
                    raise
                reason = self._failure_reason(exc)
                del exc
                gc.collect()  # free what the failed attempt holds on the GPU before retrying
                llm = self._build(req, 0, t0)
                note = f"GPU load failed ({reason.rstrip('.')}): running on CPU"
        except LoadAborted:
            self.send(ErrorEvent(None, "load_cancelled", "The model load was cancelled."))
            return
        except Exception as exc:
            name = Path(req.model_path).name
            self.send(
                ErrorEvent(
                    None, "load_failed", f"Could not load {name}: {self._failure_reason(exc)}"
                )
            )
            return
        if self._progress_sent < 1.0:
            self.send(LoadProgress(1.0, time.perf_counter() - t0))
        self.llm = llm
        self.vocab = self.lc.llama_model_get_vocab(llm.model)
        self.pooling = req.embedding_pooling
        self.governor = ThreadGovernor(req.n_threads, self._set_threads)
        self.governor.start(since=cpu_at_start)
        self.loaded = Loaded(
            load_s=time.perf_counter() - t0,
            n_ctx=int(llm.n_ctx()),
            backend_used=self.backend_used,
            gpu_layers_used=self.n_gpu_layers_used,
            note=note,
        )
        self.send(self.loaded)

    def _build(self, req: LoadRequest, n_gpu_layers: int, t0: float) -> Any:
        """Llama(...) with llama.cpp's progress callback wired to the pipe."""
        self._errors.clear()
        aborted = False
        parent_gone = False

        def on_progress(progress: float, _user_data: object) -> bool:
            nonlocal aborted, parent_gone
            try:
                if self.poll(LOAD_REQUEST_ID):
                    aborted = True
                    return False
                self._report_progress(float(progress), t0)
                return True
            except ParentGone:
                parent_gone = True
                return False
            except Exception:  # never let a reporting problem abort a load
                return True

        callback = self.lc.llama_progress_callback(on_progress)
        hooked = False
        base = self.internals.LlamaModel

        # Llama.__init__ builds its llama_model_params and loads the model in one go, with
        # no way to pass a progress callback; it builds the model through
        # `_internals.LlamaModel(path_model=..., params=...)`, so for the length of this
        # call that name is a subclass that sets the callback on those params first.
        #
        # The same subclass hides the GGUF's chat templates from Llama.__init__, which would
        # otherwise compile each one with its own Jinja environment, outside Hearth's
        # sandbox: a hostile template made that take a minute and 9 GB, a broken one made the
        # model fail to load. Hearth renders prompts itself (app.prompts) and never uses
        # llama-cpp-python's chat handlers.
        class _ProgressLlamaModel(base):  # type: ignore[misc, valid-type]
            def __init__(self, *, path_model: str, params: Any, verbose: bool = True) -> None:
                nonlocal hooked
                params.progress_callback = callback
                hooked = True
                super().__init__(path_model=path_model, params=params, verbose=verbose)

            def metadata(self) -> dict[str, str]:
                return without_chat_templates(super().metadata())

        kv = _KV_GGML_TYPES.get(req.kv_type.lower())
        if kv is None:
            raise ValueError(f"unknown KV cache type {req.kv_type!r}")
        if _fake_gpu() and n_gpu_layers != 0:
            raise RuntimeError("simulated GPU failure: out of device memory")
        self.internals.LlamaModel = _ProgressLlamaModel
        try:
            # The plan's logical and physical batches (one size when it names only one), one
            # thread count for prompt and generation, one element type for keys and values.
            n_ubatch = req.n_ubatch or req.n_batch
            batch = {"n_ctx": req.n_ctx, "n_batch": req.n_batch, "n_ubatch": n_ubatch}
            threads = {"n_threads": req.n_threads, "n_threads_batch": req.n_threads}
            kv_cache = {"type_k": kv, "type_v": kv, "flash_attn": req.flash_attn}
            # An embedding model pools its token vectors into one per input, as its own
            # GGUF says (the planner read `{arch}.pooling_type`).
            embedding: dict[str, Any] = {}
            if req.embedding_pooling is not None:
                pooling = _POOLING_TYPES[req.embedding_pooling]
                embedding = {"embedding": True, "pooling_type": pooling}
            llm = self.llama_cpp.Llama(
                req.model_path,
                n_gpu_layers=n_gpu_layers,
                use_mmap=req.use_mmap,
                chat_format=req.chat_format,
                verbose=False,
                **batch,
                **threads,
                **kv_cache,
                **embedding,
            )
        except Exception as exc:
            if parent_gone:
                raise ParentGone from exc
            if aborted:
                raise LoadAborted from exc
            raise
        finally:
            self.internals.LlamaModel = base
        if parent_gone:
            raise ParentGone
        if aborted or self.poll(LOAD_REQUEST_ID):  # a cancel that came after the weights
            llm.close()
            raise LoadAborted
        if not hooked:  # a future llama-cpp-python built the model another way
            self._report_progress(1.0, t0)
        n_layer = int(self.lc.llama_model_n_layer(llm.model))
        gpu = self._gpu_backend_name()
        if gpu and n_gpu_layers != 0:
            all_layers = n_layer + 1  # the repeating blocks + the output layer
            wanted = all_layers if n_gpu_layers < 0 else n_gpu_layers
            self.n_gpu_layers_used = min(wanted, all_layers)
            self.backend_used = gpu
        else:
            self.n_gpu_layers_used = 0
            self.backend_used = "cpu"
        return llm

    def _report_progress(self, fraction: float, t0: float) -> None:
        fraction = min(max(fraction, self._progress_sent, 0.0), 1.0)
        now = time.perf_counter()
        if (
            fraction >= 1.0 > self._progress_sent
            or fraction - self._progress_sent >= PROGRESS_STEP
            or now - self._progress_sent_at >= PROGRESS_INTERVAL_S
        ):
            self.send(LoadProgress(fraction, now - t0))
            self._progress_sent = fraction
            self._progress_sent_at = now

    def _failure_reason(self, exc: BaseException) -> str:
        """llama.cpp's own explanation from its error log, else the exception's text."""
        lines = [line for line in self._errors if line]
        for line in lines:
            if "error loading model:" in line:
                text = line.split("error loading model:", 1)[1].strip()
                text = text.removeprefix("llama_model_loader:").strip()
                return _sentence(text)
        generic = ("failed to load model", "failed to create llama_context")
        specific = [line for line in lines if not any(g in line.lower() for g in generic)]
        if specific:
            return _sentence(specific[-1].split(": ", 1)[-1])
        return _sentence(str(exc) or type(exc).__name__)

    def _gpu_backend_name(self) -> str | None:
        """Lower-case name of the first GPU backend llama.cpp can offload to, or None."""
        if not self._gpu_backend_checked:
            self._gpu_backend = _find_gpu_backend(self.lc)
            self._gpu_backend_checked = True
        return self._gpu_backend

    def _set_threads(self, n: int) -> None:
        """llama.cpp's threads for the next batch, prompt and generation alike."""
        self.lc.llama_set_n_threads(self.llm.ctx, n, n)

    def _threads_now(self) -> int:
        """Take the CPU-share advice (other programs' busy cores); the threads in use."""
        return self.governor.update() if self.governor is not None else 0

    # --- tokens -------------------------------------------------------------------------

    def tokenize(self, text: str) -> list[int]:
        """Tokens of a rendered prompt: special tokens parsed, one BOS when the model wants it."""
        tokens: list[int] = self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)
        if self.lc.llama_vocab_get_add_bos(self.vocab):
            bos = int(self.llm.token_bos())
            if bos >= 0 and (not tokens or tokens[0] != bos):
                tokens.insert(0, bos)
        return tokens

    def _piece(self, token: int) -> bytes:
        """The bytes of one token (maybe part of a UTF-8 character); control tokens: b''."""
        buf = self._piece_buf
        n = int(self.lc.llama_token_to_piece(self.vocab, token, buf, len(buf), 0, False))
        if n < 0:
            self._piece_buf = buf = ctypes.create_string_buffer(-n)
            n = int(self.lc.llama_token_to_piece(self.vocab, token, buf, len(buf), 0, False))
        return buf.raw[: max(n, 0)]

    def _tokenize_request(self, req: TokenizeRequest) -> None:
        if self.llm is None:
            self.send(ErrorEvent(req.request_id, "not_loaded", "No model is loaded."))
            return
        self.send(TokensEvent(req.request_id, len(self.tokenize(req.text))))

    def _ready_for(self, rid: str, *, embedding: bool) -> bool:
        """Whether a model is loaded for this kind of request (embeddings or text); when
        not, or when the request was cancelled while it waited, the answer is sent."""
        if self.cancelled_while_queued(rid):
            return False
        if self.llm is None or self.loaded is None:
            self.send(ErrorEvent(rid, "not_loaded", "No model is loaded."))
            return False
        if embedding and self.pooling is None:
            problem = "The loaded model was loaded for chat, not for embeddings."
        elif not embedding and self.pooling is not None:
            problem = (
                "The loaded model is an embedding model: it turns text into vectors and "
                "cannot generate text."
            )
        else:
            return True
        self.send(ErrorEvent(rid, "bad_request", problem))
        return False

    # --- embeddings ---------------------------------------------------------------------

    def _embed(self, req: EmbedRequest) -> None:
        rid = req.request_id
        if not self._ready_for(rid, embedding=True):
            return
        llm = self.llm
        # The whole of an input goes through the model in one batch (bidirectional models
        # need it so), so the batch is the limit, as large as the context when planned so.
        limit = min(int(llm.n_ctx()), int(llm.n_batch))
        counts = []
        for i, text in enumerate(req.texts):
            # As llama-cpp-python's embed() tokenizes: with the model's start and end
            # tokens ([CLS] and [SEP] for BERT), and special-token names read as text.
            n = len(llm.tokenize(text.encode("utf-8"), add_bos=True, special=False))
            if n > limit:
                self.send(
                    ErrorEvent(
                        rid,
                        "context_overflow",
                        f"input[{i}] is {n:,} tokens long, but the embedding model is loaded "
                        f"to read at most {limit:,} tokens at once.",
                    )
                )
                return
            counts.append(n)
        vectors: list[bytes] = []
        try:
            for start, end in token_batches(counts, limit):
                if self.poll(rid):
                    self.send_done(rid, "cancelled", f"{len(vectors)} of {len(counts)} vectors")
                    return
                self._threads_now()
                group = llm.embed(list(req.texts[start:end]), normalize=True, truncate=False)
                vectors += (struct.pack(f"<{len(v)}f", *v) for v in group)
        except ParentGone:
            raise
        except Exception as exc:
            self.send(ErrorEvent(rid, "generate_failed", f"llama.cpp failed to embed: {exc}."))
            return
        self.send(EmbeddingsEvent(rid, tuple(vectors), tuple(counts)))
        self.send_done(rid, "complete", f"{len(vectors)} vectors, {sum(counts)} tokens")

    # --- generation ---------------------------------------------------------------------

    def _generate(self, req: GenerateRequest) -> None:
        rid = req.request_id
        if not self._ready_for(rid, embedding=False):
            return
        if req.max_tokens < 1:
            self.send(ErrorEvent(rid, "bad_request", "max_tokens must be at least 1."))
            return
        grammar = None
        if req.json_schema is not None:
            try:
                grammar = self.llama_cpp.LlamaGrammar.from_json_schema(
                    req.json_schema, verbose=False
                )
            except Exception as exc:
                self.send(ErrorEvent(rid, "bad_request", f"The JSON schema is not usable: {exc}."))
                return
        llm = self.llm
        t_start = time.perf_counter()
        tokens = self.tokenize(req.prompt)
        n_ctx = int(llm.n_ctx())
        if len(tokens) >= n_ctx:
            self.send(
                ErrorEvent(
                    rid,
                    "context_overflow",
                    f"The conversation is {len(tokens)} tokens long, but the loaded context "
                    f"holds only {n_ctx} tokens (prompt and reply together).",
                )
            )
            return
        try:
            self._run_generation(req, tokens, n_ctx, t_start, grammar)
        except ParentGone:
            raise
        except Exception as exc:
            llm.reset()  # the KV cache may not match input_ids any more
            self.send(ErrorEvent(rid, "generate_failed", f"llama.cpp failed: {exc}."))

    def _run_generation(
        self, req: GenerateRequest, tokens: list[int], n_ctx: int, t_start: float, grammar: Any
    ) -> None:
        llm, rid = self.llm, req.request_id
        cached = self._reuse_kv_cache(tokens)
        fewest_threads = self._threads_now()
        t_prefill = time.perf_counter()
        cancelled = self._prefill(tokens[cached:], rid)
        t_prefill_end = time.perf_counter()

        n_sampled = n_generated = 0
        t_first: float | None = None
        t_last = t_prefill_end
        reason: DoneReason = "cancelled"
        if not cancelled:
            reason = "length"
            llm.set_seed(req.seed if req.seed is not None else random.randrange(2**31))
            decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
            stops = StopMatcher(req.stop)
            hit = False
            # The whole prompt is in the KV cache now, so generate() samples at once.
            gen = llm.generate(
                tokens,
                top_k=req.top_k,
                top_p=req.top_p,
                min_p=req.min_p,
                temp=max(req.temperature, 0.0),
                repeat_penalty=req.repeat_penalty,
                reset=True,
                grammar=grammar,
            )
            try:
                for token in gen:
                    t_last = time.perf_counter()
                    t_first = t_first or t_last
                    n_sampled += 1
                    if self.lc.llama_vocab_is_eog(self.vocab, token):
                        reason = "stop"
                        break
                    n_generated += 1
                    text, hit = stops.feed(decoder.decode(self._piece(token)))
                    if text:
                        self.send(TokenEvent(rid, text))
                    if hit:
                        reason = "stop"
                        break
                    if n_generated >= req.max_tokens or llm.n_tokens >= n_ctx:
                        reason = "length"
                        break
                    if self.poll(rid):
                        reason = "cancelled"
                        break
                    fewest_threads = min(fewest_threads, self._threads_now())
            finally:
                gen.close()
            if not hit:
                # Held-back text is the reply's; bytes of a character cut off by the token
                # limit are dropped rather than shown as U+FFFD.
                text = stops.flush()
                if text:
                    self.send(TokenEvent(rid, text))

        evaluated = len(tokens) - cached
        prefill_s = t_prefill_end - t_prefill
        decode_s = t_last - t_first if t_first is not None else 0.0
        assert self.loaded is not None
        self.send(
            Metrics(
                request_id=rid,
                ttft_s=(t_first or time.perf_counter()) - t_start,
                prompt_tokens=len(tokens),
                prompt_tps=evaluated / prefill_s if prefill_s > 0 and not cancelled else 0.0,
                generated_tokens=n_generated,
                decode_tps=(n_sampled - 1) / decode_s if n_sampled > 1 and decode_s > 0 else 0.0,
                n_ctx=n_ctx,
                context_used=min(len(tokens) + n_generated, n_ctx),
                backend=self.loaded.backend_used,
                gpu_layers=self.loaded.gpu_layers_used,
                cached_tokens=cached,
                threads=self._threads_now(),
                fewest_threads=fewest_threads,
            )
        )
        self.send_done(rid, reason, f"{n_generated} tokens")

    def _reuse_kv_cache(self, tokens: list[int]) -> int:
        """Keep the longest prefix of the previous turn that `tokens` repeats; its length.

        At least the last prompt token is always evaluated again, so the logits that the
        first sample reads come from this prompt.
        """
        llm = self.llm
        previous = llm.input_ids[: llm.n_tokens].tolist()
        keep = 0
        for a, b in zip(previous, tokens, strict=False):
            if a != b:
                break
            keep += 1
        keep = min(keep, len(tokens) - 1)
        if keep > 0 and llm._ctx.kv_cache_seq_rm(-1, keep, -1):
            llm.n_tokens = keep
        else:
            llm.reset()
            keep = 0
        return keep

    def _prefill(self, tokens: list[int], rid: str) -> bool:
        """Evaluate prompt tokens batch by batch; True if cancelled on the way.

        llama.cpp's abort callback reads the pipe every ABORT_POLL_INTERVAL_S while a batch
        computes, so a cancel stops even a long batch on a slow CPU.
        """
        llm = self.llm
        state = {"stop": False, "parent_gone": False, "next_poll": 0.0}

        def should_abort(_data: object) -> bool:
            if state["stop"]:
                return True
            now = time.perf_counter()
            if now < state["next_poll"]:
                return False
            state["next_poll"] = now + ABORT_POLL_INTERVAL_S
            try:
                state["stop"] = self.poll(rid)
            except ParentGone:
                state["stop"] = state["parent_gone"] = True
            except Exception:
                pass
            return bool(state["stop"])

        callback = self.lc.ggml_abort_callback(should_abort)
        self.lc.llama_set_abort_callback(llm.ctx, callback, None)
        try:
            for i in range(0, len(tokens), llm.n_batch):
                if state["stop"] or self.poll(rid):
                    return True
                try:
                    llm.eval(tokens[i : i + llm.n_batch])
                except RuntimeError:
                    if state["parent_gone"]:
                        raise ParentGone from None
                    if state["stop"]:  # llama_decode returned 2: aborted
                        return True
                    raise
            return False
        finally:
            self.lc.llama_set_abort_callback(llm.ctx, self.lc.ggml_abort_callback(), None)


def _cpu_reading() -> CpuReading | None:
    try:
        return read_cpu()
    except Exception:  # no CPU figures here: the governor keeps the plan until it has some
        return None


def token_batches(counts: Sequence[int], limit: int) -> Iterator[tuple[int, int]]:
    """(start, end) ranges of consecutive inputs whose token counts add up to at most
    `limit` (one input alone may be the whole limit): the batches embedded at once.

    >>> list(token_batches([3, 4, 5, 9], 9))
    [(0, 2), (2, 3), (3, 4)]
    """
    start, total = 0, 0
    for i, n in enumerate(counts):
        if i > start and total + n > limit:
            yield start, i
            start, total = i, 0
        total += n
    if start < len(counts):
        yield start, len(counts)


def _fake_gpu() -> bool:
    return os.environ.get(FAKE_GPU_FAILURE_ENV) == "1"


def _sentence(text: str) -> str:
    text = " ".join(text.split())
    if not text:
        return "llama.cpp gave no reason."
    text = text[0].upper() + text[1:]
    return text if text.endswith((".", "!", "?")) else text + "."


def _find_gpu_backend(lc: Any) -> str | None:
    """Ask ggml's device registry for a GPU device; its backend's name, lower-case."""
    try:
        from llama_cpp._ggml import libggml as lib

        lib.ggml_backend_dev_count.restype = ctypes.c_size_t
        lib.ggml_backend_dev_get.argtypes = [ctypes.c_size_t]
        lib.ggml_backend_dev_get.restype = ctypes.c_void_p
        lib.ggml_backend_dev_type.argtypes = [ctypes.c_void_p]
        lib.ggml_backend_dev_type.restype = ctypes.c_int
        lib.ggml_backend_dev_backend_reg.argtypes = [ctypes.c_void_p]
        lib.ggml_backend_dev_backend_reg.restype = ctypes.c_void_p
        lib.ggml_backend_reg_name.argtypes = [ctypes.c_void_p]
        lib.ggml_backend_reg_name.restype = ctypes.c_char_p
        for i in range(int(lib.ggml_backend_dev_count())):
            dev = lib.ggml_backend_dev_get(i)
            if lib.ggml_backend_dev_type(dev) in (_GGML_DEV_TYPE_GPU, _GGML_DEV_TYPE_IGPU):
                name = lib.ggml_backend_reg_name(lib.ggml_backend_dev_backend_reg(dev))
                return str(name.decode()).lower() if name else "gpu"
        return None
    except Exception:
        supports: Callable[[], bool] = lc.llama_supports_gpu_offload
        return "gpu" if supports() else None
