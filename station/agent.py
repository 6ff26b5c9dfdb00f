"""The inspection loop: image in, verdict out, whatever the model or the tools do.

The model may call tools; the loop runs them locally and feeds the observations back until an answer.
Every way this can go wrong (unusable frame, model error, unparseable turn, unknown tool, limits, deadline)
ends in a well-formed fail-safe reject with a reason. The model runs in its own thread so the loop can give
up on it exactly at the deadline: a hung model costs the part, never the station.
"""

from __future__ import annotations

import contextlib
import logging
import time
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field

import numpy as np

from station.agent_config import AgentConfig
from station.backends.base import Backend, Generation, Session
from station.protocol import Answer, ParseError, ToolCalls, assistant_message, opening_messages, parse_turn
from station.protocol.messages import tool_message
from station.verdict import FailSafeReason, RoundRecord, Timings, ToolCallRecord, Verdict
from tools.boxes import rel_to_px
from tools.image import ImageError, as_uint8
from tools.registry import ToolContext, ToolRegistry
from tools.toolkit import default_registry

log = logging.getLogger(__name__)


class _FailSafe(Exception):
    def __init__(self, reason: FailSafeReason, detail: str):
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


@dataclass
class _Run:
    """The state of one inspection while it runs."""

    part_id: str | None
    product: str | None
    start: float
    deadline: float
    frame: np.ndarray | None = None
    rounds: list[RoundRecord] = field(default_factory=list)
    evidence: list[tuple[str, np.ndarray]] = field(default_factory=list)
    tool_calls: int = 0
    tool_errors: int = 0

    def remaining(self) -> float:
        return self.deadline - time.monotonic()


class Agent:
    """Inspects parts with one backend. Thread-safe for sequential use; one model call runs at a time."""

    def __init__(
        self,
        backend: Backend,
        config: AgentConfig | None = None,
        *,
        registry: ToolRegistry | None = None,
        priors: object = None,
    ):
        self.backend = backend
        self.config = config or AgentConfig()
        self.registry = registry or default_registry()
        self.priors = priors
        self._tools = self.registry.schemas()
        self._model_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"model-{backend.name}")

    def close(self) -> None:
        self._model_thread.shutdown(wait=False, cancel_futures=True)

    def inspect(
        self,
        image: object,
        product: str | None = None,
        *,
        part_id: str | None = None,
        config: AgentConfig | None = None,
    ) -> Verdict:
        """Inspect one part. Never raises: failures come back as fail-safe verdicts."""
        config = config or self.config
        start = time.monotonic()
        run = _Run(part_id=part_id, product=product, start=start, deadline=start + config.deadline_s)
        try:
            answer, generation = self._converse(run, image, config)
            return self._verdict(run, config, answer=answer, generation=generation)
        except _FailSafe as fail:
            log.info("part %s: fail-safe reject (%s): %s", part_id, fail.reason, fail.detail)
            return self._verdict(run, config, reason=fail.reason, detail=fail.detail)
        except Exception as exc:  # a bug here must still reject the part, not lose it
            log.exception("part %s: internal error", part_id)
            return self._verdict(run, config, reason="internal_error", detail=f"{type(exc).__name__}: {exc}")

    def fail_safe(
        self,
        reason: FailSafeReason,
        detail: str,
        *,
        part_id: str | None = None,
        product: str | None = None,
        config: AgentConfig | None = None,
    ) -> Verdict:
        """A fail-safe verdict for a part that never reached the model (a frame that could not be decoded)."""
        now = time.monotonic()
        run = _Run(part_id=part_id, product=product, start=now, deadline=now)
        return self._verdict(run, config or self.config, reason=reason, detail=detail)

    # -- the conversation --------------------------------------------------------------------------

    def _converse(self, run: _Run, image: object, config: AgentConfig) -> tuple[Answer, Generation]:
        try:
            run.frame = as_uint8(image)  # type: ignore[arg-type]
        except ImageError as exc:
            raise _FailSafe("corrupt_frame", str(exc)) from exc
        run.evidence.append(("frame", run.frame))
        context = ToolContext(
            frame=run.frame,
            product=run.product,
            priors=self.priors,
            mm_per_px=config.mm_per_px,
            max_observation_pixels=config.max_observation_pixels,
        )
        messages = opening_messages(run.frame, run.product, config.instruction)
        session = self._call_model(run, lambda: self.backend.open_session(self._tools), "opening a session")
        try:
            while True:
                generation, seconds = self._generate(run, session, messages, config)
                record = RoundRecord(
                    index=len(run.rounds),
                    text=generation.text,
                    kind="no_output",
                    finish_reason=generation.finish_reason,
                    prefill_tokens=generation.prefill_tokens,
                    generated_tokens=generation.generated_tokens,
                    prefill_s=generation.prefill_s,
                    decode_s=generation.decode_s,
                    model_s=seconds,
                )
                run.rounds.append(record)
                turn = parse_turn(generation.text)
                if isinstance(turn, ParseError):
                    record.kind = "parse_error"
                    record.parse_error = {"code": turn.code, "message": turn.message}
                    if generation.finish_reason == "deadline":
                        raise _FailSafe("deadline", "the model was still writing at the deadline")
                    if generation.finish_reason == "length":
                        raise _FailSafe(
                            "token_limit",
                            f"turn cut off at {config.max_new_tokens} new tokens ({turn.message})",
                        )
                    raise _FailSafe("parse_error", f"{turn.code}: {turn.message}")
                if isinstance(turn, Answer):
                    record.kind = "answer"
                    return turn, generation
                record.kind = "tool_calls"
                messages.append(assistant_message(turn))
                messages.extend(self._run_tools(run, turn, record, context, config))
        finally:
            self._close_later(session)

    def _call_model(self, run: _Run, fn, what: str):
        """Run ``fn`` on the model thread and wait for it at most until the deadline."""
        remaining = run.remaining()
        if remaining <= 0:
            raise _FailSafe("deadline", f"deadline passed before {what}")
        future: Future = self._model_thread.submit(fn)
        try:
            return future.result(timeout=remaining)
        except FutureTimeout:
            raise _FailSafe("deadline", f"no result from the model within the deadline ({what})") from None
        except Exception as exc:
            if run.remaining() <= 0:  # a backend that gives up at the deadline by raising
                raise _FailSafe("deadline", f"{what}: {type(exc).__name__}: {exc}") from exc
            raise _FailSafe("backend_error", f"{what}: {type(exc).__name__}: {exc}") from exc

    def _generate(
        self, run: _Run, session: Session, messages: list[dict], config: AgentConfig
    ) -> tuple[Generation, float]:
        start = time.perf_counter()
        snapshot = list(messages)  # the loop appends while a timed-out call may still be reading
        generation = self._call_model(
            run,
            lambda: session.generate(snapshot, max_new_tokens=config.max_new_tokens, deadline=run.deadline),
            f"round {len(run.rounds) + 1}",
        )
        if not isinstance(generation, Generation):
            raise _FailSafe(
                "backend_error", f"backend returned {type(generation).__name__}, not a Generation"
            )
        return generation, time.perf_counter() - start

    def _run_tools(
        self, run: _Run, turn: ToolCalls, record: RoundRecord, context: ToolContext, config: AgentConfig
    ) -> list[dict]:
        if run.tool_calls + len(turn.calls) > config.max_tool_calls:
            raise _FailSafe(
                "tool_limit",
                f"{run.tool_calls + len(turn.calls)} tool calls exceed the limit of {config.max_tool_calls}",
            )
        results = []
        start = time.perf_counter()
        try:
            for call in turn.calls:
                if run.remaining() <= 0:
                    raise _FailSafe("deadline", f"deadline passed before running {call.name}")
                observation = self.registry.call(call.name, call.arguments, context)
                run.tool_calls += 1
                record.tool_calls.append(
                    ToolCallRecord(
                        name=call.name,
                        arguments=call.arguments,
                        ok=observation.ok,
                        error=observation.error,
                        observation=observation.text,
                        images=len(observation.images),
                        seconds=observation.seconds,
                    )
                )
                run.evidence.extend((call.name, img) for img in observation.images)
                if not observation.ok:
                    run.tool_errors += 1
                    if run.tool_errors > config.max_tool_errors:
                        error = observation.error or {}
                        raise _FailSafe(
                            "tool_error", f"{call.name}: {error.get('code')}: {error.get('message')}"
                        )
                results.append(tool_message(observation))
        finally:  # counted even when a tool round ends in a fail-safe
            record.tools_s = time.perf_counter() - start
        return results

    def _close_later(self, session: Session) -> None:
        """Close the session on the model thread, after any call still running there."""

        def close() -> None:
            try:
                session.close()
            except Exception:
                log.exception("closing a model session failed")

        with contextlib.suppress(RuntimeError):  # the agent is shutting down
            self._model_thread.submit(close)

    # -- the verdict -------------------------------------------------------------------------------

    def _verdict(
        self,
        run: _Run,
        config: AgentConfig,
        *,
        answer: Answer | None = None,
        generation: Generation | None = None,
        reason: FailSafeReason | None = None,
        detail: str | None = None,
    ) -> Verdict:
        rounds = run.rounds
        timings = Timings(
            total_s=time.monotonic() - run.start,
            model_s=sum(r.model_s for r in rounds),
            prefill_s=sum(r.prefill_s for r in rounds),
            decode_s=sum(r.decode_s for r in rounds),
            tools_s=sum(r.tools_s for r in rounds),
        )
        fields = dict(
            part_id=run.part_id,
            product=run.product,
            threshold=config.threshold,
            backend=self.backend.name,
            model=self.backend.model_id,
            tool_calls=run.tool_calls,
            prefill_tokens=sum(r.prefill_tokens for r in rounds),
            generated_tokens=sum(r.generated_tokens for r in rounds),
            timings=timings,
            trace=rounds,
        )
        if answer is None or generation is None:
            verdict = Verdict(decision="reject", fail_safe=True, reason=reason, detail=detail, **fields)
        else:
            if generation.verdict_prob is not None:
                confidence, source = generation.verdict_prob, "logits"
            else:
                confidence, source = answer.confidence, "stated"
            bbox_px = None
            if answer.bbox is not None and run.frame is not None:
                h, w = run.frame.shape[:2]
                bbox_px = list(rel_to_px(answer.bbox, w, h))
            defective = confidence >= config.threshold if confidence is not None else answer.anomaly
            verdict = Verdict(
                decision="reject" if defective else "accept",
                anomaly=answer.anomaly,
                type=answer.type,
                bbox=list(answer.bbox) if answer.bbox is not None else None,
                bbox_px=bbox_px,
                confidence=confidence,
                confidence_source=source,
                stated_confidence=answer.confidence,
                **fields,
            )
        verdict._evidence = run.evidence
        return verdict
