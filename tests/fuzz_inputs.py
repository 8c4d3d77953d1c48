"""What tests/test_fuzz.py throws at agentrun, and what each case must give back.

Four families of input, each a hypothesis strategy with its oracle: the ``AgentRun``
workflow input, the scripted agent's script language, the delegation tools' arguments,
and calls to the owner's client. Each family also carries the values that once broke
the engine (ids over Temporal's limits, integers beyond int64, NUL and lone surrogates,
internal resume fields such as a running child or a negative script position).
"""

from __future__ import annotations

import json
import re
import string
from dataclasses import dataclass, field
from typing import Any

from hypothesis import strategies as st
from temporalio.client import WorkflowExecutionStatus
from temporalio.exceptions import ApplicationError

from agentrun import DelegationError
from agentrun._agents._scripted import MAX_SLEEP
from agentrun._models import parse_run_input
from agentrun._run_ids import child_run_id
from tests.conftest import registry_for_tests
from tests.helpers import child, script
from tests.properties import Ending, json_values, near

AGENTS = registry_for_tests()
AGENT_IDS = ("scripted", "planner", "helper", "loner", "picky", "nobody", "", " scripted ")
TOOLS = ("agent_run", "agent_stop", "agent_output")
KINDS = ("say", "sleep", "tool", "fail")
REFS = st.sampled_from(["$1", "$1", "$2", "$3", "$0", "$9", " $1"])
SUMMARY_KEYS = {"run_id", "agent_id", "status", "assistant", "error"}
STATUSES = ("running", "completed", "failed", "stopped")
SCRIPT_STATE_KEYS = ("script_at", "step", "slept")
SMALL_PROMPTS = st.sampled_from(
    ["hello", script({"say": "hi"}), script({"fail": "boom"}), script({"sleep": 0.1}, {"say": "x"})]
)
NOT_A_BOOL = st.sampled_from(["true", 1, 0, None, "yes"])


# --- 1. the workflow input -------------------------------------------------------------


VALID_MESSAGE = st.fixed_dictionaries(
    {"role": st.sampled_from(["user", "assistant", "system", "tool"])},
    optional={
        "content": st.none() | st.text(max_size=20),
        "tool_calls": st.lists(
            st.fixed_dictionaries(
                {"id": st.text(max_size=4), "name": st.sampled_from(TOOLS)},
                optional={"args": st.dictionaries(st.text(max_size=5), json_values(4))},
            ),
            max_size=2,
        ),
        "tool_call_id": st.text(max_size=4),
    },
)
MESSAGE = near(
    VALID_MESSAGE,
    {
        "role": st.sampled_from(["robot", "", "USER", None]),
        "content": st.integers() | st.lists(st.text(max_size=3), max_size=2),
        "tool_calls": st.lists(st.dictionaries(st.text(max_size=4), json_values(2)), max_size=2),
        "tool_call_id": st.integers(),
    },
)
CHILDREN = st.lists(
    st.fixed_dictionaries(
        {
            "run_id": st.text(max_size=8),
            "agent_id": st.sampled_from(AGENT_IDS),
            "status": st.sampled_from(["running", "completed", "failed", "stopped"]),
        }
    ),
    max_size=2,
)
VALID_INPUT = st.fixed_dictionaries(
    {
        "owner_thread_id": st.sampled_from(["fuzz-owner", " padded "]) | st.text(min_size=1),
        "agent_id": st.sampled_from(AGENT_IDS[:-2]),
        "prompt": SMALL_PROMPTS | st.text(min_size=1, max_size=30),
    },
    optional={
        "messages": st.lists(VALID_MESSAGE, max_size=3),
        "epoch": st.integers(1, 3),
        "depth": st.integers(0, 9),
        "parent_run_id": st.none() | st.text(max_size=10),
        "agent_state": st.dictionaries(st.text(max_size=6), json_values(4)),
        "children": CHILDREN,
        "stream_state": st.none(),
    },
)
ODD_INPUT_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "owner_thread_id": st.sampled_from(["", "  ", None, "a\x00b", "o" * 3000]) | st.text(),
    "agent_id": st.sampled_from([*AGENT_IDS, "s" * 3000]) | st.text(max_size=10),
    "prompt": st.sampled_from([None, "", "   "]) | st.text(max_size=30),
    "messages": st.lists(MESSAGE, max_size=3),
    "epoch": st.integers(-1, 0) | st.integers() | st.just(2**63),
    "depth": st.just(-1) | st.integers(),
    "parent_run_id": st.just(""),
    "agent_state": json_values(4)
    | st.fixed_dictionaries(
        {"script_at": st.integers(-1, 2), "step": st.integers(-5, 5) | json_values(2)},
        optional={"slept": st.floats(allow_nan=False) | json_values(2)},
    ),
    "children": CHILDREN
    | st.lists(st.dictionaries(st.text(max_size=6), json_values(2)), max_size=2),
    "stream_state": st.sampled_from([{}, {"base_offset": -1}, {"log": [1]}, {"publishers": []}]),
}
WORKFLOW_INPUTS = near(VALID_INPUT, ODD_INPUT_FIELDS) | json_values()


def check_input_ending(payload: Any, end: Ending) -> None:
    """A run started with ``payload`` ended at once, as validation says it must."""
    assert not end.stuck, f"{payload!r} did not end cleanly: {end}"
    try:
        parsed = parse_run_input(payload)
    except ValueError as err:
        assert end.status == WorkflowExecutionStatus.FAILED, end
        assert isinstance(end.failure, ApplicationError), end
        assert (end.failure.type, end.failure.message) == ("InvalidInput", str(err))
        assert str(err).startswith(
            (
                "AgentRun input must be a JSON object, got ",
                "Invalid AgentRun input: ",
                "'prompt' is required unless 'messages' ends with a user message",
            )
        )
        return
    if end.status == WorkflowExecutionStatus.COMPLETED:
        assert end.result["status"] == "completed"
        return
    assert end.status == WorkflowExecutionStatus.FAILED, end
    assert isinstance(end.failure, ApplicationError) and end.failure.type == "AgentFailed"
    if AGENTS.get(parsed.agent_id) is None:
        assert end.failure.message == f"Unknown or unavailable agent_id: {parsed.agent_id}"
    else:
        assert end.failure.message.strip(), end


# --- 2. the scripted agent's language -------------------------------------------------


@dataclass(frozen=True)
class Drawn:
    """A generated script step and what it must do."""

    raw: Any
    bad: bool = False
    fails_with: str | None = None
    says: str | None = None


def good_steps(depth: int) -> st.SearchStrategy[Drawn]:
    """Valid steps; tool steps nest scripts for children down to depth 2."""
    prompts: st.SearchStrategy[Any] = st.text(min_size=1, max_size=12)
    if depth < 2:
        prompts |= st.lists(any_steps(depth + 1), max_size=3).map(
            lambda steps: {"steps": [s.raw for s in steps]}
        )
    agent_run = st.fixed_dictionaries(
        {"agent_id": st.sampled_from(["scripted", "helper", "nobody"]), "prompt": prompts},
        optional={"background": st.booleans(), "fork_context": st.booleans()},
    )
    by_ref = st.fixed_dictionaries({"run_id": REFS | st.text(max_size=6)})
    tools = (
        agent_run.map(lambda args: {"tool": "agent_run", "args": args})
        | st.tuples(st.sampled_from(TOOLS), by_ref).map(lambda p: {"tool": p[0], "args": p[1]})
        | st.sampled_from(TOOLS).map(lambda name: {"tool": name})
        # A tool the worker does not have: an ``unknown_tool`` result, and the script goes on.
        | st.text(alphabet=string.ascii_letters, min_size=1, max_size=10)
        .filter(lambda name: name not in TOOLS)
        .map(lambda name: {"tool": name, "args": {"x": 1}})
    )
    return st.one_of(
        st.text(max_size=12).map(lambda text: Drawn({"say": text}, says=text)),
        (st.floats(0, 0.3) | st.sampled_from([0, "0.1", False])).map(
            lambda seconds: Drawn({"sleep": seconds})
        ),
        st.text(min_size=1, max_size=12).map(lambda text: Drawn({"fail": text}, fails_with=text)),
        tools.map(Drawn),
    )


def _two_kinds(pair: tuple[dict[str, Any], dict[str, Any]]) -> bool:
    return pair[0].keys() != pair[1].keys()


def _extra_key_is_new(pair: tuple[dict[str, Any], str]) -> bool:
    return pair[1] not in pair[0]


def bad_steps() -> st.SearchStrategy[Drawn]:
    """Steps that break the language in one of the ways it names."""
    not_text = json_values(4).filter(lambda v: not isinstance(v, str))
    bad_seconds = (
        st.floats(max_value=-0.001, allow_infinity=False)
        | st.floats(min_value=MAX_SLEEP * 2, allow_infinity=False)
        | st.text(alphabet=string.ascii_letters, min_size=1, max_size=6)
        | st.none()
        | st.lists(st.integers(), max_size=2)
    )
    simple: st.SearchStrategy[dict[str, Any]] = st.sampled_from(
        [{"say": "x"}, {"sleep": 0}, {"fail": "x"}, {"tool": "agent_output"}]
    )
    raw = st.one_of(
        json_values(4).filter(lambda v: not isinstance(v, dict)),
        st.dictionaries(st.text(max_size=6).filter(lambda k: k not in KINDS), json_values(4)),
        st.tuples(simple, simple).filter(_two_kinds).map(lambda p: {**p[0], **p[1]}),
        not_text.map(lambda v: {"say": v}),
        not_text.map(lambda v: {"fail": v}),
        bad_seconds.map(lambda v: {"sleep": v}),
        st.sampled_from(["", "x" * 201]).map(lambda name: {"tool": name}),
        json_values(2).filter(lambda v: not isinstance(v, str)).map(lambda v: {"tool": v}),
        json_values(4)
        .filter(lambda v: not isinstance(v, dict))
        .map(lambda v: {"tool": "agent_run", "args": v}),
        st.tuples(simple, st.text(max_size=6).filter(lambda k: k not in ("tool", "args")))
        .filter(_extra_key_is_new)
        .map(lambda p: {**p[0], p[1]: 1}),
    )
    return raw.map(lambda r: Drawn(r, bad=True))


def any_steps(depth: int) -> st.SearchStrategy[Drawn]:
    """A step that is valid or, as often, not."""
    return good_steps(depth) | bad_steps()


@dataclass(frozen=True)
class Expected:
    """How a prompt's run must end: its status and assistant text or error pattern."""

    prompt: str
    status: str
    assistant: str | None = None
    error: str | None = None  # a regular expression the whole message must match


def script_run(steps: list[Drawn], extra: dict[str, Any]) -> Expected:
    """A script: the first bad step fails it, else the first fail step, else it completes."""
    prompt = json.dumps({**extra, "steps": [s.raw for s in steps]})
    first_bad = next((i for i, s in enumerate(steps, start=1) if s.bad), None)
    if first_bad is not None:
        return Expected(prompt, "failed", error=rf"Invalid script: step {first_bad}[ :].*")
    fail = next((s.fails_with for s in steps if s.fails_with is not None), None)
    if fail is not None:
        return Expected(prompt, "failed", error=re.escape(fail))
    said = [s.says for s in steps if s.says]
    return Expected(prompt, "completed", assistant=said[-1] if said else None)


def not_a_list(steps: Any) -> Expected:
    """A document whose ``steps`` is not a list."""
    prompt = json.dumps({"steps": steps})
    message = f"Invalid script: 'steps' must be a list, got {type(steps).__name__}"
    return Expected(prompt, "failed", error=re.escape(message))


def echoed(value: Any) -> Expected:
    """JSON that is not a script: the agent echoes it."""
    prompt = json.dumps(value)
    return Expected(prompt, "completed", assistant=prompt)


def lone_surrogate(steps: list[Drawn], index: int, char: str) -> Expected:
    """A script with a lone surrogate escape (plain ASCII JSON): no step can carry it."""
    raw = [s.raw for s in steps]
    raw.insert(min(index, len(raw)), {"say": f"x{char}"})
    error = r"Invalid script: a string contains an unpaired surrogate .*"
    return Expected(json.dumps({"steps": raw}), "failed", error=error)


SURROGATES = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)
EXTRA_KEYS = st.dictionaries(st.text(max_size=5).filter(lambda k: k != "steps"), json_values(3))
PROMPTS = st.one_of(
    st.builds(script_run, st.lists(good_steps(0), min_size=1, max_size=5), EXTRA_KEYS),
    st.builds(script_run, st.lists(any_steps(0), min_size=1, max_size=5), EXTRA_KEYS),
    json_values(4).filter(lambda v: not isinstance(v, list)).map(not_a_list),
    st.builds(lone_surrogate, st.lists(any_steps(0), max_size=3), st.integers(0, 3), SURROGATES),
    json_values().filter(lambda v: not (isinstance(v, dict) and "steps" in v)).map(echoed),
)


def check_script_ending(expected: Expected, end: Ending) -> None:
    """The script's run ended as the language says."""
    assert not end.stuck, f"{expected.prompt} did not end cleanly: {end}"
    if expected.status == "completed":
        assert end.status == WorkflowExecutionStatus.COMPLETED, (expected, end)
        assert end.result["assistant"] == expected.assistant
        return
    assert end.status == WorkflowExecutionStatus.FAILED, (expected, end)
    assert isinstance(end.failure, ApplicationError), end
    assert expected.error is not None
    assert re.fullmatch(expected.error, end.failure.message, re.DOTALL), (expected, end)


# --- 3. the delegation tools' arguments ------------------------------------------------

CHILD_PROMPTS = (
    st.text(min_size=1, max_size=12)
    | SMALL_PROMPTS
    | st.just(child({"sleep": 1.5}, {"say": "slow"}))
    | json_values(4)
)
NEW_RUNS = st.fixed_dictionaries(
    {"agent_id": st.sampled_from(["scripted", "helper", "planner"]), "prompt": CHILD_PROMPTS},
    optional={"background": st.booleans(), "fork_context": st.booleans()},
)
VALID_ARGS: dict[str, st.SearchStrategy[dict[str, Any]]] = {
    "agent_run": NEW_RUNS
    | st.fixed_dictionaries(
        {"run_id": REFS}, optional={"prompt": st.text(max_size=8), "background": st.booleans()}
    ),
    "agent_stop": st.fixed_dictionaries({"run_id": REFS}),
    "agent_output": st.fixed_dictionaries({"run_id": REFS}),
}
ODD_ARGS: dict[str, st.SearchStrategy[Any]] = {
    "agent_id": st.sampled_from(AGENT_IDS) | st.text(max_size=8),
    "prompt": st.sampled_from(["", "  "]) | st.text(max_size=8),
    "run_id": REFS | st.sampled_from(["", " "]) | st.text(max_size=6),
    "fork_context": NOT_A_BOOL,
    "background": NOT_A_BOOL,
}
# Valid new runs half of the time, so that the "$N" references have runs to reach.
TOOL_CALLS = st.tuples(st.just("agent_run"), NEW_RUNS) | st.sampled_from(TOOLS).flatmap(
    lambda name: st.tuples(st.just(name), near(VALID_ARGS[name], ODD_ARGS))
)
PARENTS = st.sampled_from(["scripted", "planner", "loner", "picky"])


@dataclass
class ToolOracle:
    """What each tool result of one run must be, replaying docs/delegation.md section 4."""

    parent: str
    visible: list[str]
    children: dict[str, str] = field(default_factory=dict)  # run_id -> agent_id
    refs: list[str] = field(default_factory=list)

    def check(self, name: str, args: dict[str, Any], result: dict[str, Any]) -> None:
        """Check the result of the next tool call, ``name`` with ``args``."""
        resolved = {key: self._resolve(key, value) for key, value in args.items()}
        expected_error = self._error(name, resolved)
        if expected_error is not None:
            code, message = expected_error
            assert set(result) == {"error"} and set(result["error"]) == {"code", "message"}
            assert result["error"]["code"] == code, (name, args, result)
            assert re.fullmatch(message, result["error"]["message"], re.DOTALL), (args, result)
        elif set(result) == {"error"}:
            # Only stopping a child that is no longer running is left to fail.
            assert name == "agent_stop" and result["error"]["code"] == "invalid_state", result
            message = result["error"]["message"]
            assert re.fullmatch(r"Run '.*' is not running \(current status: \w+\)", message)
        else:
            self._check_success(name, resolved, result)
        run_id = result.get("run_id")
        self.refs.append(run_id if isinstance(run_id, str) else "")

    def _resolve(self, key: str, value: Any) -> Any:
        # As the scripted agent does: nested prompts become text, "$N" a run_id.
        if key == "prompt" and isinstance(value, dict | list):
            return json.dumps(value)
        match = re.fullmatch(r"\$(\d+)", value) if isinstance(value, str) else None
        number = int(match.group(1)) if match else 0
        if 1 <= number <= len(self.refs) and self.refs[number - 1]:
            return self.refs[number - 1]
        return value

    def _error(self, name: str, args: dict[str, Any]) -> tuple[str, str] | None:
        keys = ("agent_id", "prompt", "run_id") if name == "agent_run" else ("run_id",)
        for key in keys:
            value = args.get(key)
            if value is not None and not isinstance(value, str):
                return "invalid_arguments", f"'{key}' must be a string, got {type(value).__name__}"
        text = {key: (args.get(key) or "").strip() or None for key in keys}
        if text["run_id"] is not None:
            if text["run_id"] not in self.children:
                return "unknown_run", re.escape(f"Unknown run_id: {text['run_id']}")
            return None
        if name != "agent_run":
            return "invalid_arguments", "missing 'run_id'"
        if text["agent_id"] is None:
            return "invalid_arguments", "missing 'agent_id'"
        if text["prompt"] is None:
            return "invalid_arguments", "missing 'prompt'"
        if text["agent_id"] not in self.visible:
            message = f"Unknown or unavailable agent_id: {text['agent_id']}"
            return "unknown_agent", re.escape(message)
        return None

    def _check_success(self, name: str, args: dict[str, Any], result: dict[str, Any]) -> None:
        run_id = (args.get("run_id") or "").strip()
        if name == "agent_output":
            assert set(result) == {"run_id", "agent_id", "status", "output"}, result
            assert (result["run_id"], result["agent_id"]) == (run_id, self.children[run_id])
            return
        assert set(result) == SUMMARY_KEYS and result["status"] in STATUSES, result
        if run_id:
            assert (result["run_id"], result["agent_id"]) == (run_id, self.children[run_id])
            return
        agent_id = args["agent_id"].strip()
        new_id = child_run_id(self.parent, len(self.children) + 1, agent_id)
        assert (result["run_id"], result["agent_id"]) == (new_id, agent_id), result
        if args.get("background") is True:
            assert result["status"] == "running", result
        else:
            assert result["status"] in ("completed", "failed"), result
        self.children[new_id] = agent_id


def tool_oracle(run_id: str, agent_id: str) -> ToolOracle:
    """The oracle for the tool calls of run ``run_id`` of ``agent_id``."""
    spec = AGENTS.get(agent_id)
    assert spec is not None
    return ToolOracle(run_id, AGENTS.policy(spec).visible_agents)


# --- 4. the owner's client -------------------------------------------------------------

OWNER_TEXT = st.text(max_size=24) | st.sampled_from(["a\x00b", "o" * 3000])


@dataclass
class Known:
    """The fuzzed owner's real runs, which the client calls also target."""

    owner: str
    running: str
    completed: str
    stopped: str

    def ids(self) -> list[str]:
        """Every run the owner has, including the running run's child."""
        return [self.running, f"{self.running}.1-scripted", self.completed, self.stopped]


ClientCall = tuple[Any, ...]


def client_calls(known: Known) -> st.SearchStrategy[ClientCall]:
    """``(method, owner_thread_id, *arguments)`` for every method of AgentRunClient.

    ``start``'s last argument is a run_id suffix; the test makes it unique (a reused
    run_id is the subject of tests/test_isolation.py).
    """
    owners = OWNER_TEXT | st.just(known.owner) | st.just(f"{known.owner}-good")
    run_ids = st.text(max_size=30) | st.sampled_from([*known.ids(), "r" * 1001])
    agents = st.text(max_size=10) | st.sampled_from(AGENT_IDS)
    prompts = st.none() | st.text(max_size=30) | SMALL_PROMPTS
    return st.one_of(
        st.tuples(st.just("start"), owners, agents, prompts, st.none() | st.text(max_size=10)),
        st.tuples(st.just("start"), owners, agents, prompts, st.just("r" * 1001)),
        st.tuples(st.sampled_from(["summary", "thread", "stop_tree", "events"]), owners, run_ids),
        st.tuples(st.just("wait"), owners, run_ids),
        st.tuples(st.just("resume"), owners, run_ids, prompts),
        st.tuples(st.sampled_from(["all", "running_or_stopped"]), owners),
    )


def check_client_outcome(known: Known, call: ClientCall, result: object) -> None:
    """None/[]/a value, or DelegationError/ValueError with a clear message; foreign and
    unknown runs give exactly what a run that does not exist gives."""
    name, owner, *rest = call
    target = rest[0] if rest and name != "start" else None
    foreign = owner != known.owner or (target is not None and target not in known.ids())
    if isinstance(result, Exception):
        if name == "wait" and isinstance(result, TimeoutError) and not foreign:
            return  # the caller's own timeout, on its own run still running
        assert isinstance(result, DelegationError | ValueError), (call, repr(result))
        assert str(result).strip(), (call, repr(result))
        if isinstance(result, DelegationError) and foreign and target is not None:
            assert str(result) == f"Unknown run_id: {target}", (call, result)
        return
    if name in ("all", "running_or_stopped"):
        assert isinstance(result, list)
        assert all(s.owner_thread_id == owner for s in result), (call, result)
    elif name in ("summary", "thread") and foreign:
        assert result is None, (call, result)
    elif name == "start":
        assert isinstance(result, str) and result, (call, result)
    assert not (foreign and name in ("stop_tree", "resume", "events", "wait")), (call, result)
