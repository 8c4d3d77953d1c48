"""The data that crosses Temporal: workflow input and results, turns, events, summaries.

Every model here is JSON through the pydantic data converter, so any Temporal client
can read and write it. Fields are added with defaults so that older starters and
histories keep working.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, JsonValue, ValidationError, field_validator
from temporalio.common import RawValue
from temporalio.contrib.workflow_streams import WorkflowStreamState

from agentrun._constants import TURN_HEARTBEAT_TIMEOUT, TURN_START_TO_CLOSE
from agentrun._storage_guard import unreadable_reason
from agentrun._usage import Budget, BudgetScope, BudgetStop, Usage

Role = Literal["user", "assistant", "system", "tool"]
Status = Literal["running", "completed", "failed", "stopped"]
TERMINAL: tuple[Status, ...] = ("completed", "failed", "stopped")


MAX_ID_CHARS = 256
MAX_RUN_ID_CHARS = 900  # Temporal's WorkflowId limit is 1000
MAX_COUNT = 1_000_000_000  # epochs, depths, turns: far below a search attribute's int64
MAX_DEPTH_SCOPES = 64  # budgets a run is under: far beyond any delegation depth


def check_id(value: str, what: str = "id") -> str:
    """An owner, agent or run id, trimmed; ValueError if blank or unprintable."""
    value = value.strip()
    if not value:
        raise ValueError("must not be blank")
    if any(ord(ch) < 32 or 0xD800 <= ord(ch) <= 0xDFFF for ch in value):
        raise ValueError(f"{what} must not contain control characters or lone surrogates")
    return value


def encodable(value: str) -> str:
    """``value`` unless it cannot be sent as UTF-8 (a lone surrogate): ValueError."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as err:
        bad = value[err.start : err.end].encode("unicode_escape").decode()
        raise ValueError(f"contains an unpaired surrogate ({bad}) at index {err.start}") from None
    return value


class ToolCall(BaseModel):
    """A delegation tool call made by an agent."""

    id: str
    name: str
    args: dict[str, JsonValue] = Field(default_factory=dict)


class Message(BaseModel):
    """One message of a run's thread."""

    model_config = ConfigDict(extra="ignore")

    role: Role
    content: str = ""
    tool_calls: list[ToolCall] = Field(default_factory=list)
    tool_call_id: str | None = None
    name: str | None = None

    @field_validator("content", mode="before")
    @classmethod
    def _null_content_is_empty(cls, value: object) -> object:
        return "" if value is None else value

    @field_validator("content", mode="after")
    @classmethod
    def _utf8(cls, value: str) -> str:
        return encodable(value)

    @classmethod
    def user(cls, text: str) -> Message:
        """A user message."""
        return cls(role="user", content=text)


class RunSummary(BaseModel):
    """What a run is now: the shape every operation and tool returns."""

    run_id: str
    agent_id: str
    status: Status
    assistant: str | None = None
    error: str | None = None
    owner_thread_id: str = ""
    parent_run_id: str | None = None
    epoch: int = 1
    usage: Usage = Field(default_factory=Usage)  # the run's own, all its epochs
    # The run's and all its descendants', read from visibility by agentrun's clients
    # (``agentrun._spend``); None in the workflow's own ``summary`` query.
    tree_usage: Usage | None = None
    budget: Budget | None = None  # the run's own budget, over its subtree

    def tool_view(self) -> dict[str, JsonValue]:
        """The five fields a delegation tool returns to an agent."""
        return self.model_dump(include={"run_id", "agent_id", "status", "assistant", "error"})


class AgentRunInput(BaseModel):
    """Input of the ``AgentRun`` workflow (see docs/contract.md).

    Only ``owner_thread_id``, ``agent_id`` and ``prompt``/``messages`` are for
    starters; the rest is set by a parent run or by the resume path.
    """

    model_config = ConfigDict(extra="ignore")

    # Ids are search attribute values: Temporal takes at most 2048 bytes of Keyword.
    owner_thread_id: str = Field(min_length=1, max_length=MAX_ID_CHARS)
    agent_id: str = Field(min_length=1, max_length=MAX_ID_CHARS)
    prompt: str | None = None
    messages: list[Message] = Field(default_factory=list)
    epoch: int = Field(default=1, ge=1, le=MAX_COUNT)
    parent_run_id: str | None = Field(default=None, max_length=MAX_RUN_ID_CHARS)
    depth: int = Field(default=0, ge=0, le=MAX_COUNT)
    agent_state: dict[str, JsonValue] = Field(default_factory=dict)
    children: list[RunSummary] = Field(default_factory=list)
    stream_state: WorkflowStreamState | None = None
    turn: int = Field(default=0, ge=0, le=MAX_COUNT)
    continued: bool = False
    continue_as_new_after: int = Field(default=500, ge=1, le=MAX_COUNT)
    # One attempt of a turn; a longer turn (a week-long sleep) is retried from its
    # checkpoint each time an attempt runs out, so only the slice in flight repeats.
    turn_timeout: float = Field(
        default=TURN_START_TO_CLOSE.total_seconds(), ge=1.0, le=30 * 24 * 3600.0
    )
    # How long a turn's worker may be silent before Temporal retries the turn elsewhere:
    # what a killed worker costs in waiting. Shorter is quicker recovery, more heartbeats.
    heartbeat_timeout: float = Field(
        default=TURN_HEARTBEAT_TIMEOUT.total_seconds(), ge=1.0, le=3600.0
    )
    # Whoever started the run set its search attributes (agentrun._visibility): the run
    # does not upsert them again when it starts.
    search_attributes_set: bool = False
    # The run keeps its latest text in its memo when it closes stopped (``TEXT_MEMO``).
    # Set by every starter since it exists; a run from before replays without it.
    text_memo: bool = False
    # The workflow code its starter wrote the run for (agentrun/_versions.py): from
    # version 1 the run takes every patched path without a marker. Set by every starter
    # since it exists; a run from before replays with 0.
    version: int = Field(default=0, ge=0, le=MAX_COUNT)
    # The client that started the run follows it from the start (``start(follow=True)``,
    # ``agentrun run``): its first turn streams at the followed pace from its first event.
    followed: bool = False
    usage: Usage = Field(default_factory=Usage)  # what earlier epochs and runs spent
    # The run's own budget, over its subtree (``agentrun._usage.Budget``).
    budget: Budget | None = None
    # The budgets of its ancestors, nearest last: each covers that ancestor's subtree.
    budgets: list[BudgetScope] = Field(default_factory=list, max_length=MAX_DEPTH_SCOPES)
    # The run at the top of its tree, which counts the tree's runs; None: this run,
    # if it has no parent (a child started before trees were counted: no count).
    root_run_id: str | None = Field(default=None, max_length=MAX_RUN_ID_CHARS)
    # Kept by a root: the runs of its tree, and of each subtree with a ``runs`` budget.
    tree_runs: dict[str, int] = Field(default_factory=dict)

    @field_validator("owner_thread_id", "agent_id", mode="after")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        return check_id(value)

    @field_validator("children", mode="after")
    @classmethod
    def _children_settled(cls, children: list[RunSummary]) -> list[RunSummary]:
        # Carried children come from a stopped or continued run: none can be running
        # in this execution (it started none), so a "running" claim is not trusted.
        return [
            child.model_copy(update={"status": "stopped"}) if child.status == "running" else child
            for child in children
        ]

    @field_validator("prompt", mode="after")
    @classmethod
    def _utf8_prompt(cls, value: str | None) -> str | None:
        return None if value is None else encodable(value)

    def initial_thread(self) -> list[Message]:
        """The thread the run starts with: prior messages plus the prompt."""
        thread = list(self.messages)
        if self.prompt is not None and self.prompt.strip():
            thread.append(Message.user(self.prompt))
        return thread

    def check_prompt(self) -> None:
        """Raise ValueError unless the run has a user message to answer.

        A resumed run (epoch > 1) or a continued one continues its thread and needs
        no new prompt.
        """
        thread = self.initial_thread()
        if self.epoch > 1 or self.continued:
            return
        if not thread or thread[-1].role != "user":
            raise ValueError("'prompt' is required unless 'messages' ends with a user message")


def parse_run_input(raw: Any) -> AgentRunInput:
    """Validate a starter's JSON into an ``AgentRunInput``.

    Raises:
        ValueError: with one line naming each bad field and what was expected.
    """
    unreadable = unreadable_reason(raw)
    if unreadable is not None:
        raise ValueError(f"AgentRun input is a payload that cannot be read: {unreadable}")
    if not isinstance(raw, dict):
        raise ValueError(f"AgentRun input must be a JSON object, got {type(raw).__name__}")
    try:
        parsed = AgentRunInput.model_validate(raw)
    except ValidationError as err:
        raise ValueError(f"Invalid AgentRun input: {describe_errors(err)}") from None
    parsed.check_prompt()
    return parsed


def describe_errors(err: ValidationError) -> str:
    """Pydantic errors as one line: ``field: problem (got value); ...``."""
    parts = []
    for item in err.errors():
        where = ".".join(str(p) for p in item["loc"]) or "input"
        got = repr(item.get("input"))
        got = got if len(got) <= 60 else got[:57] + "..."
        parts.append(f"{where}: {item['msg']} (got {got})")
    return "; ".join(parts)


class RunState(BaseModel):
    """Everything a stopped run needs to be resumed as its next epoch."""

    summary: RunSummary
    thread: list[Message]
    agent_state: dict[str, JsonValue] = Field(default_factory=dict)
    children: list[RunSummary] = Field(default_factory=list)
    depth: int = 0
    stream_state: WorkflowStreamState | None = None
    budget: Budget | None = None
    budgets: list[BudgetScope] = Field(default_factory=list)
    root_run_id: str | None = None
    tree_runs: dict[str, int] = Field(default_factory=dict)

    def resumed(
        self,
        owner_thread_id: str,
        prompt: str | None,
        parent_run_id: str | None,
        budget: Budget | None = None,
    ) -> AgentRunInput:
        """The input of the run's next epoch: its thread (and ``prompt``), state,
        children, stream, usage and tree, under ``budget`` if given, else its own."""
        thread = [*self.thread, Message.user(prompt)] if prompt else self.thread
        return AgentRunInput(
            owner_thread_id=owner_thread_id,
            agent_id=self.summary.agent_id,
            messages=thread,
            epoch=self.summary.epoch + 1,
            parent_run_id=parent_run_id,
            depth=self.depth,
            agent_state=self.agent_state,
            children=self.children,
            stream_state=self.stream_state,
            usage=self.summary.usage,
            budget=budget or self.budget,
            budgets=self.budgets,
            root_run_id=self.root_run_id,
            tree_runs=self.tree_runs,
        )


EventKind = Literal[
    "run_started",
    "text_delta",
    "message",
    "tool_call",
    "tool_progress",
    "tool_result",
    "child_started",
    "child_finished",
    "approval_requested",
    "approval_decided",
    "user_message",
    "turn_retrying",
    "error",
    "finish",
]
EVENT_KINDS: frozenset[str] = frozenset(get_args(EventKind))


class AgentEvent(BaseModel):
    """One event on a run's stream.

    Events a turn activity publishes carry ``turn`` and a per-turn ``seq`` so that a
    retried turn can recognise the events its killed attempt had already published.
    ``kind`` is one of ``EventKind``, or, read from a newer worker's stream, a kind this
    version does not know (``EVENT_KINDS`` has the known ones): a follower shows or
    skips it, never fails on it.
    """

    run_id: str
    epoch: int
    kind: EventKind | str
    turn: int = 0
    seq: int = -1
    text: str | None = None
    message: Message | None = None
    tool_call: ToolCall | None = None
    summary: RunSummary | None = None
    usage: Usage | None = None  # on the ``message`` of a model response


class PendingApproval(BaseModel):
    """A tool call waiting for its owner's decision (query ``pending_approvals``)."""

    run_id: str
    agent_id: str
    call_id: str
    tool: str
    args: dict[str, JsonValue] = Field(default_factory=dict)
    requested_at: datetime
    timeout_at: datetime | None = None


class ToolDecision(BaseModel):
    """Input of the ``decide_tool_call`` update: the owner's decision on one call."""

    owner_thread_id: str
    call_id: str
    approved: bool
    reason: str | None = Field(default=None, max_length=4000)


class UserMessage(BaseModel):
    """Input of the ``send_message`` update: a user message for a running run."""

    owner_thread_id: str
    content: str = Field(min_length=1, max_length=100_000)


class TurnInput(BaseModel):
    """Input of one turn activity."""

    run_id: str
    owner_thread_id: str
    agent_id: str
    epoch: int
    turn: int
    depth: int
    messages: list[Message]
    agent_state: dict[str, JsonValue] = Field(default_factory=dict)
    children: list[RunSummary] = Field(default_factory=list)
    stream_offset: int = 0
    # A long thread: ``messages`` are the thread from index ``tail_from`` on (what was
    # added since the previous turn began), the rest is read from the run or a copy.
    thread_by_query: bool = False
    tail_from: int = 0
    # The budgets the run is under, its own last: checked before its model requests.
    budgets: list[BudgetScope] = Field(default_factory=list)
    # Someone follows the run from its start: stream at the followed pace until the run's
    # ``stream_polls`` say otherwise, instead of unwatched until they say so.
    followed: bool = False


class AgentPolicy(BaseModel):
    """Which runs an agent may delegate, as the worker's registry says."""

    visible_agents: list[str] = Field(default_factory=list)
    max_depth: int = 8
    # The most runs one tree may have (``AGENTRUN_MAX_RUNS_PER_TREE``), as the worker
    # that ran the turn is configured; enforced by the tree's root.
    max_runs_per_tree: int = 1000
    # The agent entry's default budget for a run of it that has none of its own.
    budget: Budget | None = None


class TurnResult(BaseModel):
    """What one turn produced: new messages, and why it ended."""

    messages: list[Message] = Field(default_factory=list)
    agent_state: dict[str, JsonValue] = Field(default_factory=dict)
    tool_calls: list[ToolCall] = Field(default_factory=list)
    error: str | None = None
    stopped: bool = False
    policy: AgentPolicy = Field(default_factory=AgentPolicy)
    # The turn's last events, not sent to the stream yet: the workflow publishes them.
    events: list[AgentEvent] = Field(default_factory=list)
    steps: int = 0  # steps the turn took, all its attempts together
    # How the workflow executes each of ``tool_calls``, as the turn's worker resolved
    # them; a call without a route is a delegation tool (histories before tools).
    routes: list[ToolRoute] = Field(default_factory=list)
    usage: Usage = Field(default_factory=Usage)  # of the responses the thread keeps
    # A budget found spent before the turn's model request: the turn made none.
    budget_exceeded: BudgetStop | None = None


class ToolRoute(BaseModel):
    """How the workflow executes one tool call.

    ``delegation``: the workflow runs it (``agent_run``, ``agent_stop``,
    ``agent_output``); ``activity``: the activity ``activity`` calls the tool;
    ``result``: ``content`` is the result already (an unknown tool, say). With
    ``approval``, the call waits for its owner's decision before anything runs.
    """

    call_id: str
    kind: Literal["delegation", "activity", "result"]
    activity: str | None = None
    tool: str = ""  # the name the activity calls (an MCP server's own name)
    summary: str = ""
    start_to_close: float = 300.0
    heartbeat: float = 5.0
    attempts: int = 4
    task_queue: str | None = None
    content: str | None = None
    approval: bool = False  # the call waits for the owner's decision first
    approval_timeout: float | None = None  # seconds; then it is denied


class ToolCallInput(BaseModel):
    """Input of a tool call's activity."""

    run_id: str
    owner_thread_id: str
    agent_id: str
    epoch: int = 1
    call_id: str
    tool: str
    args: dict[str, JsonValue] = Field(default_factory=dict)


class ToolOutcome(BaseModel):
    """What a tool call's activity returns: the result for the model, or why not.

    ``error`` is a problem the model can mend (arguments that do not validate, a tool
    that asked for a retry); an exception is retried by Temporal instead.
    """

    content: str
    error: str | None = None


class TurnCheckpoint(BaseModel):
    """A turn's progress, heartbeated after every step.

    ``events_published`` counts the turn's events confirmed on the stream when the
    checkpoint was taken; ``stream_offset`` is the stream's length when the turn was
    scheduled, so a retry scans only this turn's events for ones already published.
    ``ended`` with ``tool_calls``/``error`` keeps how the turn ended, so a retry after
    the last step hands back that ending instead of running the agent on.
    """

    steps: int = 0
    messages: list[Message] = Field(default_factory=list)
    agent_state: dict[str, JsonValue] = Field(default_factory=dict)
    events_published: int = 0
    stream_offset: int = 0
    ended: bool = False
    tool_calls: list[ToolCall] = Field(default_factory=list)
    error: str | None = None
    usage: Usage = Field(default_factory=Usage)


@dataclass(frozen=True)
class EncodedCheckpoint(RawValue):
    """A ``TurnCheckpoint`` as heartbeat details, encoded once (activities/_beat.py): the
    SDK passes a ``RawValue`` through. ``steps`` is its ``steps``, for the metric of
    checkpoints written (agentrun/_observability.py)."""

    steps: int = 0


class ResumeChildRequest(BaseModel):
    """Update input: resume one of this run's stopped children."""

    run_id: str
    prompt: str | None = None
    budget: Budget | None = None  # a new budget for the resumed child's subtree


class ReserveRuns(BaseModel):
    """Update input of a tree's root: runs a run of the tree asks to start."""

    owner_thread_id: str
    requester: str
    count: int = Field(ge=1, le=1000)
    # The ``runs`` budgets the requester is under: subtree run id -> its limit.
    budgets: dict[str, int] = Field(default_factory=dict)


class RunGrant(BaseModel):
    """How many of the runs asked for may start; why the rest may not."""

    granted: int = 0
    refused: str | None = None  # the tree has as many runs as one tree may have
    stop: BudgetStop | None = None  # a budget is spent: that subtree stops


class ReserveInput(BaseModel):
    """Input of the activity that asks a tree's root for runs (and first checks what
    the budgets of ``spending`` have left)."""

    root_run_id: str
    request: ReserveRuns
    spending: list[BudgetScope] = Field(default_factory=list)


class StopForBudget(BaseModel):
    """Input of the activity that stops a subtree whose budget is spent, and the run
    that found it."""

    owner_thread_id: str
    requester: str
    stop: BudgetStop


class CheckBudgetInput(BaseModel):
    """Input of the activity that says whether a subtree has spent its budget."""

    owner_thread_id: str
    scope: BudgetScope


class AssistantOutput(BaseModel):
    """Signal from a turn to its run: the agent's latest assistant text so far."""

    epoch: int
    turn: int
    text: str


class ReadRunInput(BaseModel):
    """Input of the activity that reads another run's state."""

    run_id: str
